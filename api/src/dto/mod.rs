//! The JSON shapes of the API, with their OpenAPI schemas and examples.

pub mod calendar;
pub mod examples;
pub mod notice;
pub mod page;
pub mod revision;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod tenant;
