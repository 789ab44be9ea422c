//! Solar schedules: the events of Celery's `solar` schedule, computed without PyEphem.
//!
//! Celery's definitions, which we reproduce: dawn/dusk horizons of -18 (astronomical), -12
//! (nautical) and -6 (civil) degrees for the Sun's centre; sunrise and sunset at -0 deg 34' for
//! its upper limb; solar noon is the meridian transit. Observer at elevation 0 with pressure 0,
//! so no refraction is added beyond the -34' horizon, which stands for it. Dawns and sunrise are
//! risings, dusks and sunset settings.
//!
//! The search walks the Sun's daily circuits, meridian transit to transit. A rising normally
//! lies between an anti-transit (lowest point) and the next transit (highest point), a setting
//! between a transit and the next anti-transit; a half-circuit holds the event exactly when the
//! altitudes at its two ends bracket the horizon, and a Newton iteration inside the bracket finds
//! it. Circuits where the Sun stays on one side of the horizon (polar day or night) are skipped
//! by probing only the culmination altitudes, which drift with the declination, at most ~0.4
//! degree a day. Every event time is computed from its circuit's number alone, never from where
//! the search began, so an event always truncates to the same second.
//!
//! Accuracy against PyEphem with Celery's settings is measured by the reference fixtures in
//! `fixtures/` (see the README there): within 3 s everywhere the event clearly happens.

mod position;
mod search;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use position::J2000_UNIX;

/// The events of Celery's `solar` schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SolarEvent {
    Sunrise,
    Sunset,
    SolarNoon,
    DawnCivil,
    DawnNautical,
    DawnAstronomical,
    DuskCivil,
    DuskNautical,
    DuskAstronomical,
}

/// Which input a solar error is about, so the API can name the JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolarField {
    Latitude,
    Longitude,
}

/// A solar schedule that cannot be built, with the input it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SolarError {
    pub field: SolarField,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Rising,
    Setting,
    Transit,
}

impl SolarEvent {
    fn kind(self) -> Kind {
        use SolarEvent::*;
        match self {
            Sunrise | DawnCivil | DawnNautical | DawnAstronomical => Kind::Rising,
            Sunset | DuskCivil | DuskNautical | DuskAstronomical => Kind::Setting,
            SolarNoon => Kind::Transit,
        }
    }

    /// The horizon in degrees and whether it applies to the upper limb (else the centre).
    fn horizon(self) -> (f64, bool) {
        use SolarEvent::*;
        match self {
            Sunrise | Sunset => (-34.0 / 60.0, true),
            DawnCivil | DuskCivil => (-6.0, false),
            DawnNautical | DuskNautical => (-12.0, false),
            DawnAstronomical | DuskAstronomical => (-18.0, false),
            SolarNoon => (0.0, false),
        }
    }
}

/// Searches start within this many days of J2000.0 (about 1000 years).
const VALID_DAYS: f64 = 365_250.0;

/// A validated solar schedule: one event at one place.
#[derive(Debug, Clone, Copy)]
pub struct SolarSchedule {
    event: SolarEvent,
    latitude: f64,
    longitude: f64,
    sin_lat: f64,
    cos_lat: f64,
    lon_rad: f64,
    horizon_deg: f64,
    upper_limb: bool,
}

fn check_range(field: SolarField, name: &str, value: f64, limit: f64) -> Result<(), SolarError> {
    let message = if !value.is_finite() {
        format!("{name} must be a finite number, got {value}")
    } else if !(-limit..=limit).contains(&value) {
        format!("{name} {value} is out of range -{limit} to {limit}")
    } else {
        return Ok(());
    };
    Err(SolarError { field, message })
}

impl SolarSchedule {
    /// Validates the place: latitude in [-90, 90], longitude in [-180, 180], both finite.
    pub fn new(
        event: SolarEvent,
        latitude: f64,
        longitude: f64,
    ) -> Result<SolarSchedule, SolarError> {
        check_range(SolarField::Latitude, "latitude", latitude, 90.0)?;
        check_range(SolarField::Longitude, "longitude", longitude, 180.0)?;
        let (sin_lat, cos_lat) = latitude.to_radians().sin_cos();
        let (horizon_deg, upper_limb) = event.horizon();
        Ok(SolarSchedule {
            event,
            latitude,
            longitude,
            sin_lat,
            cos_lat,
            lon_rad: longitude.to_radians(),
            horizon_deg,
            upper_limb,
        })
    }

    pub fn event(&self) -> SolarEvent {
        self.event
    }

    pub fn latitude(&self) -> f64 {
        self.latitude
    }

    pub fn longitude(&self) -> f64 {
        self.longitude
    }

    /// The first event strictly after `after`, truncated to the whole second, skipping days
    /// without the event; `None` when there is none within about two years (or `after` is more
    /// than a millennium from 2000).
    ///
    /// Fire instants are the events' whole seconds, so the answer is the first event at or
    /// after `after`'s whole second plus one (an event inside `after`'s own second has fired).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let earliest = after.timestamp().checked_add(1)?;
        let start = (earliest as f64 - J2000_UNIX) / 86_400.0;
        // The solar theory is fitted to the present era; a millennium either way of 2000 is
        // far beyond any schedule and still well inside its validity.
        if start.abs() > VALID_DAYS {
            return None;
        }
        let fire = match self.event.kind() {
            Kind::Transit => self.first_transit_from(start, earliest),
            kind => self.first_crossing_from(kind, start, earliest)?,
        };
        DateTime::from_timestamp(fire, 0)
    }
}
