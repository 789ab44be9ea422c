//! The solar search: daily circuits of the Sun, horizon crossings inside them, and skipping of
//! polar days and nights. The parent module describes the method; this file holds the numbers.

use std::f64::consts::{PI, TAU};

use super::position::{normalize_pi, slow_terms, sun_place_with, SlowTerms, SunPlace, J2000_UNIX};
use super::{Kind, SolarSchedule};

/// How far ahead a search goes before answering `None`. Every event happens at least once a
/// year at every latitude (at the poles the Sun crosses each horizon once each way), so two
/// years only end searches that cannot succeed.
const SEARCH_DAYS: f64 = 731.0;

/// Upper bound of how much the altitude at transit or anti-transit changes from one day to the
/// next, in degrees: it follows the declination, which moves at most ~0.40 degree a day.
const MAX_DAILY_DRIFT_DEG: f64 = 0.45;

/// How far off a probe's culmination altitudes may be, in degrees: slow terms up to a search's
/// length stale (perturbations and nutation, under 0.02 degree) and the culmination instants
/// taken from first guesses (a minute off at an extremum of the altitude: nothing).
const PROBE_ERROR_DEG: f64 = 0.05;

/// Newton iterations stop when the step is below this (days): 86 ms. Both iterations converge
/// fast enough (the transit one gains a factor ~3000 per step, the crossing one is quadratic)
/// that the error left after such a step is a few milliseconds at most.
const TIME_PRECISION_DAYS: f64 = 1e-6;

/// The Sun's hour angle turns once per solar day (the Sun's own motion in right ascension is
/// what makes the solar day longer than the sidereal day): radians per day.
const HOUR_ANGLE_RATE: f64 = TAU;

/// The fire instant of an event at `days` (from J2000.0): its whole second.
fn fire_second(days: f64) -> i64 {
    (J2000_UNIX + days * 86_400.0).floor() as i64
}

impl SolarSchedule {
    /// Altitude above this event's horizon, in degrees (negative below).
    fn height(&self, place: &SunPlace) -> f64 {
        let altitude = place.altitude_deg(self.sin_lat, self.cos_lat, self.lon_rad);
        let limb = if self.upper_limb {
            place.semi_diameter_deg()
        } else {
            0.0
        };
        altitude + limb - self.horizon_deg
    }

    /// The meridian passage (hour angle `target`: 0 transit, pi anti-transit) nearest `guess`,
    /// with the Sun's place there.
    fn passage_near(&self, guess: f64, target: f64, slow: &SlowTerms) -> (f64, SunPlace) {
        let mut t = guess;
        let mut place = sun_place_with(t, slow);
        for _ in 0..8 {
            let step = normalize_pi(place.hour_angle(self.lon_rad) - target) / HOUR_ANGLE_RATE;
            t -= step;
            if step.abs() < TIME_PRECISION_DAYS {
                // The place moved by a fraction of an arcsecond: good for the altitude tests.
                break;
            }
            place = sun_place_with(t, slow);
        }
        (t, place)
    }

    // Circuits are numbered: circuit `n` runs from the transit near local mean noon of day `n`
    // (days from J2000.0) to the next transit. Every event time is a function of its circuit
    // number alone (first guesses and slow terms come from `n`, never from where a search
    // began), so one event always truncates to the same second: consecutive searches can
    // neither repeat an event one second later nor skip it.

    /// The equation of time in days near day `day` (from J2000.0): a three-term fit good to
    /// about a minute, enough for first guesses.
    fn equation_of_time_days(day: f64) -> f64 {
        // Day 0 is 1 January 2000 at noon, day of the year 1.5.
        let b = TAU * (day + 1.5 - 81.0) / 365.2422;
        (9.87 * (2.0 * b).sin() - 7.53 * b.cos() - 1.5 * b.sin()) / 1440.0
    }

    /// First guess for transit `n`: local mean noon corrected by the equation of time.
    fn noon_guess(&self, n: i64) -> f64 {
        let day = n as f64;
        day - self.longitude / 360.0 - Self::equation_of_time_days(day)
    }

    /// The (fractional) transit number at `days`: transit `n` is near `days` when this is `n`.
    fn transit_number(&self, days: f64) -> f64 {
        days + self.longitude / 360.0 + Self::equation_of_time_days(days)
    }

    /// The middle of circuit `n`, where its slow terms are evaluated. Transit `n + 1` uses the
    /// same ones, half a day away from it, so each circuit pays for them once.
    fn circuit_middle(&self, n: i64) -> f64 {
        n as f64 + 0.5 - self.longitude / 360.0
    }

    /// Transit `n` and the Sun's place there; `slow` must be circuit `n - 1`'s slow terms.
    fn noon_with(&self, n: i64, slow: &SlowTerms) -> (f64, SunPlace) {
        self.passage_near(self.noon_guess(n), 0.0, slow)
    }

    fn noon(&self, n: i64) -> (f64, SunPlace) {
        self.noon_with(n, &slow_terms(self.circuit_middle(n - 1)))
    }

    pub(super) fn first_transit_from(&self, start: f64, earliest: i64) -> i64 {
        // The first guess at or after `start`, one earlier when the guesses are close enough
        // (15 minutes) for their error to matter.
        let mut n = self.transit_number(start).ceil() as i64;
        if self.noon_guess(n - 1) > start - 0.01 {
            n -= 1;
        }
        loop {
            let fire = fire_second(self.noon(n).0);
            if fire >= earliest {
                return fire;
            }
            n += 1;
        }
    }

    pub(super) fn first_crossing_from(&self, kind: Kind, start: f64, earliest: i64) -> Option<i64> {
        let limit = start + SEARCH_DAYS;
        // Rising: from below to above; setting: from above to below.
        let sign = if kind == Kind::Rising { 1.0 } else { -1.0 };
        // Begin with the circuit of the last transit before `start` (erring early by one when
        // the first guess is within 15 minutes of `start`).
        let mut n = self.transit_number(start).floor() as i64;
        if self.noon_guess(n) > start - 0.01 {
            n -= 1;
        }
        let (mut noon, mut noon_place) = self.noon(n);
        while noon <= limit {
            let slow = slow_terms(self.circuit_middle(n));
            let (anti, anti_place) = self.passage_near(noon + 0.5, PI, &slow);
            let (next_noon, next_noon_place) = self.noon_with(n + 1, &slow);
            let heights = [
                sign * self.height(&noon_place),
                sign * self.height(&anti_place),
                sign * self.height(&next_noon_place),
            ];
            // The descending half first, then the ascending one. Away from the poles only the
            // half that belongs to the event can bracket its crossing; near a pole the
            // declination's drift can outpace the Sun's tiny daily circle and put it in the
            // other half, where the physical crossing is still the event.
            let halves = [
                (
                    (noon, &noon_place),
                    (anti, &anti_place),
                    kind == Kind::Setting,
                ),
                (
                    (anti, &anti_place),
                    (next_noon, &next_noon_place),
                    kind == Kind::Rising,
                ),
            ];
            for (index, (lo, hi, own_half)) in halves.into_iter().enumerate() {
                let bracketed = heights[index] < 0.0 && heights[index + 1] > 0.0;
                if bracketed && hi.0 >= start - TIME_PRECISION_DAYS {
                    let fire = fire_second(self.crossing(kind, lo, hi, own_half, &slow));
                    if fire >= earliest {
                        return Some(fire);
                    }
                }
            }
            n += 1;
            (noon, noon_place) = (next_noon, next_noon_place);
            if heights.iter().all(|h| *h > 0.0) || heights.iter().all(|h| *h < 0.0) {
                // Polar day or night: move on to the first circuit that may have the event.
                let clear = self.clear_circuits_from(n, &slow, limit);
                if clear > n {
                    n = clear;
                    (noon, noon_place) = self.noon(n);
                }
            }
        }
        None
    }

    /// The first circuit from `n` on that is not certain to lack a crossing of this event's
    /// horizon, found by probing only the culmination altitudes (two cheap positions per probe
    /// instead of two meridian passages) with `slow` reused however far the probes go.
    ///
    /// A probe whose culminations both miss the horizon on the same side by `p` (after
    /// allowing `PROBE_ERROR_DEG`) clears its circuit and the following ones for as long as
    /// the declination's drift, at most `MAX_DAILY_DRIFT_DEG` a day, cannot close that gap.
    fn clear_circuits_from(&self, mut n: i64, slow: &SlowTerms, limit: f64) -> i64 {
        loop {
            let guess = self.noon_guess(n);
            if guess > limit {
                return n;
            }
            let upper = self.height_at_culmination(&sun_place_with(guess, slow), 0.0);
            let lower = self.height_at_culmination(&sun_place_with(guess + 0.5, slow), PI);
            if (upper > 0.0) != (lower > 0.0) {
                return n;
            }
            let margin = upper.abs().min(lower.abs()) - PROBE_ERROR_DEG;
            // Circuits n ..= n + j stay clear while (j + 1) drifts stay below the margin.
            let j = (margin / MAX_DAILY_DRIFT_DEG).ceil() as i64 - 2;
            if j < 0 {
                return n;
            }
            n += j + 1;
        }
    }

    /// Height above this event's horizon at an hour angle (0 or pi), in degrees.
    fn height_at_culmination(&self, place: &SunPlace, hour_angle: f64) -> f64 {
        let altitude = place.altitude_at_hour_angle_deg(self.sin_lat, self.cos_lat, hour_angle);
        let limb = if self.upper_limb {
            place.semi_diameter_deg()
        } else {
            0.0
        };
        altitude + limb - self.horizon_deg
    }

    /// The horizon crossing between `lo` and `hi`, where the height changes sign: Newton's
    /// method on the height, started from the hour-angle estimate, kept inside the bracket
    /// (bisection when a step would leave it, which happens only where the Sun barely crosses).
    fn crossing(
        &self,
        kind: Kind,
        (lo, lo_place): (f64, &SunPlace),
        (hi, hi_place): (f64, &SunPlace),
        own_half: bool,
        slow: &SlowTerms,
    ) -> f64 {
        let (mut a, mut b) = (lo, hi);
        let mut h_a = self.height(lo_place);
        // First guess: the classic semi-diurnal arc from the declination at the transit end.
        let (noon, noon_place) = match kind {
            Kind::Setting => (lo, lo_place),
            _ => (hi, hi_place),
        };
        let limb = if self.upper_limb {
            noon_place.semi_diameter_deg()
        } else {
            0.0
        };
        let target = (self.horizon_deg - limb).to_radians();
        let dec = noon_place.dec;
        let cos_arc = (target.sin() - self.sin_lat * dec.sin()) / (self.cos_lat * dec.cos());
        let arc = if cos_arc.is_finite() {
            cos_arc.clamp(-1.0, 1.0).acos() / HOUR_ANGLE_RATE
        } else {
            0.25
        };
        let mut t = match kind {
            Kind::Setting => noon + arc,
            _ => noon - arc,
        };
        if !(own_half && t > a && t < b) {
            t = 0.5 * (a + b);
        }
        for _ in 0..60 {
            let place = sun_place_with(t, slow);
            let h = self.height(&place);
            if h == 0.0 {
                return t;
            }
            if (h < 0.0) == (h_a < 0.0) {
                (a, h_a) = (t, h);
            } else {
                b = t;
            }
            // d(altitude)/dt from d(sin alt) = -cos(lat) cos(dec) sin(H) dH, in degrees per day.
            let hour_angle = place.hour_angle(self.lon_rad);
            let altitude = (h + self.horizon_deg).to_radians();
            let slope = -self.cos_lat * place.dec.cos() * hour_angle.sin() / altitude.cos()
                * HOUR_ANGLE_RATE.to_degrees();
            let mut next = t - h / slope;
            if !(slope.is_finite() && next > a && next < b) {
                next = 0.5 * (a + b);
            }
            if (next - t).abs() < TIME_PRECISION_DAYS || b - a < TIME_PRECISION_DAYS {
                return next;
            }
            t = next;
        }
        t
    }
}
