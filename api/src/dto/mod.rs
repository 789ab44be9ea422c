//! The JSON shapes of the API, with their OpenAPI schemas.

pub mod page;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod tenant;
