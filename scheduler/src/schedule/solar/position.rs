//! The Sun's apparent place and the Earth's rotation, from Meeus' low-precision theory.
//!
//! Jean Meeus, *Astronomical Algorithms* (2nd ed.): chapter 25 (solar coordinates, "lower
//! accuracy"), chapter 22 (nutation, the few largest terms) and chapter 12 (sidereal time), plus
//! the periodic perturbations by Venus, Jupiter and the Moon from his *Astronomical Formulae for
//! Calculators*. Without those terms the place is good to about 0.01 degree; with them, against
//! PyEphem's VSOP87 over 2026-2027, right ascension is within 9" and declination within 3".
//! A horizon crossing moves by (altitude error) / (rate of climb), so that keeps every event of
//! the reference fixtures within a few seconds, except where the Sun barely reaches the horizon.

use std::f64::consts::TAU;

/// Unix time of J2000.0 (2000-01-01T12:00:00Z); time here is days from it, on the UT scale.
pub(super) const J2000_UNIX: f64 = 946_728_000.0;

/// TT - UT in days. Only the Sun's motion along its orbit depends on it (one degree a day), so
/// a few seconds of error move the Sun by a fraction of an arcsecond; a constant near the
/// 2020s value (PyEphem extrapolates about 74 s for 2026) is ample.
const DELTA_T_DAYS: f64 = 72.0 / 86_400.0;

/// The Sun's semi-diameter at 1 AU, in degrees (959.63", the value PyEphem uses too).
const SEMI_DIAMETER_1AU_DEG: f64 = 959.63 / 3600.0;

/// The Sun's equatorial horizontal parallax at 1 AU, in degrees (8.794").
const PARALLAX_1AU_DEG: f64 = 8.794 / 3600.0;

/// Where the Sun is, seen from the Earth's centre, at one instant.
#[derive(Debug, Clone, Copy)]
pub(super) struct SunPlace {
    /// Apparent right ascension, radians.
    pub ra: f64,
    /// Apparent declination, radians.
    pub dec: f64,
    /// Greenwich apparent sidereal time, radians.
    pub gast: f64,
    /// Distance in astronomical units.
    pub distance_au: f64,
}

impl SunPlace {
    /// Local hour angle in radians, normalised to (-pi, pi]; negative before the meridian.
    pub fn hour_angle(&self, longitude_rad: f64) -> f64 {
        normalize_pi(self.gast + longitude_rad - self.ra)
    }

    /// Semi-diameter in degrees.
    pub fn semi_diameter_deg(&self) -> f64 {
        SEMI_DIAMETER_1AU_DEG / self.distance_au
    }

    /// Topocentric altitude of the centre, in degrees, without refraction (PyEphem with
    /// pressure 0): the geocentric altitude lowered by the Sun's parallax.
    pub fn altitude_deg(&self, sin_lat: f64, cos_lat: f64, longitude_rad: f64) -> f64 {
        self.altitude_at_hour_angle_deg(sin_lat, cos_lat, self.hour_angle(longitude_rad))
    }

    /// The same at a given hour angle (0 for the upper culmination, pi for the lower).
    pub fn altitude_at_hour_angle_deg(&self, sin_lat: f64, cos_lat: f64, h: f64) -> f64 {
        let sin_alt = sin_lat * self.dec.sin() + cos_lat * self.dec.cos() * h.cos();
        let alt = sin_alt.clamp(-1.0, 1.0).asin().to_degrees();
        alt - PARALLAX_1AU_DEG / self.distance_au * alt.to_radians().cos()
    }
}

/// (-pi, pi]
pub(super) fn normalize_pi(angle: f64) -> f64 {
    let a = angle.rem_euclid(TAU);
    if a > std::f64::consts::PI {
        a - TAU
    } else {
        a
    }
}

/// The slowly varying parts of the Sun's place: nutation, obliquity and the planetary and lunar
/// perturbations. The fastest of them (the Moon's elongation, 12 degrees a day, amplitude 6.4")
/// moves the Sun by under 0.7" in half a day, so a search evaluates them once per daily
/// circuit, at its middle, and saves two thirds of the trigonometry.
#[derive(Debug, Clone, Copy)]
pub(super) struct SlowTerms {
    /// Nutation in longitude plus perturbations in longitude, degrees.
    longitude_deg: f64,
    /// Nutation in longitude alone (for the equation of the equinoxes), degrees.
    nutation_longitude_deg: f64,
    /// Perturbations in distance, AU.
    distance_au: f64,
    /// sin and cos of the true obliquity.
    sin_obliquity: f64,
    cos_obliquity: f64,
}

/// Julian centuries of TT from J2000.0.
fn centuries_tt(days: f64) -> f64 {
    (days + DELTA_T_DAYS) / 36_525.0
}

pub(super) fn slow_terms(days: f64) -> SlowTerms {
    let t = centuries_tt(days);
    let t2 = t * t;
    let deg = f64::to_radians;

    // Perturbations by Venus, Jupiter and the Moon (Meeus, Astronomical Formulae for
    // Calculators, ch. 18; arguments count Julian centuries from 1900.0).
    let t1900 = t + 1.0;
    let pa = deg(153.23 + 22518.7541 * t1900);
    let pb = deg(216.57 + 45037.5082 * t1900);
    let pc = deg(312.69 + 32964.3577 * t1900);
    let pd = deg(350.74 + 445267.1142 * t1900 - 0.00144 * t1900 * t1900);
    let pe = deg(231.19 + 20.20 * t1900);
    let ph = deg(353.40 + 65928.7155 * t1900);
    let (sin_a, cos_a) = pa.sin_cos();
    let (sin_b, cos_b) = pb.sin_cos();
    let (sin_c, cos_c) = pc.sin_cos();
    let (sin_d, cos_d) = pd.sin_cos();
    let perturbation_longitude =
        0.00134 * cos_a + 0.00154 * cos_b + 0.00200 * cos_c + 0.00179 * sin_d + 0.00178 * pe.sin();
    let perturbation_distance = 0.000_005_43 * sin_a
        + 0.000_015_75 * sin_b
        + 0.000_016_27 * sin_c
        + 0.000_030_76 * cos_d
        + 0.000_009_27 * ph.sin();

    // Nutation, largest terms (Meeus ch. 22), in degrees.
    let omega = deg(125.044_52 - 1_934.136_261 * t);
    let l_sun = deg(280.4665 + 36000.7698 * t);
    let l_moon = deg(218.3165 + 481267.8813 * t);
    let (sin_om, cos_om) = omega.sin_cos();
    let (sin_2om, cos_2om) = (2.0 * omega).sin_cos();
    let (sin_2ls, cos_2ls) = (2.0 * l_sun).sin_cos();
    let (sin_2lm, cos_2lm) = (2.0 * l_moon).sin_cos();
    let nutation_longitude =
        (-17.20 * sin_om - 1.32 * sin_2ls - 0.23 * sin_2lm + 0.21 * sin_2om) / 3600.0;
    let nutation_obliquity =
        (9.20 * cos_om + 0.57 * cos_2ls + 0.10 * cos_2lm - 0.09 * cos_2om) / 3600.0;

    // Mean obliquity (Meeus 22.2) plus nutation in obliquity.
    let obliquity = deg(23.439_291_111 - 0.013_004_167 * t - 0.000_000_164 * t2
        + 0.000_000_504 * t2 * t
        + nutation_obliquity);
    let (sin_obliquity, cos_obliquity) = obliquity.sin_cos();
    SlowTerms {
        longitude_deg: nutation_longitude + perturbation_longitude,
        nutation_longitude_deg: nutation_longitude,
        distance_au: perturbation_distance,
        sin_obliquity,
        cos_obliquity,
    }
}

/// The Sun's apparent place at `days` (UT days from J2000.0), everything evaluated there.
#[cfg(test)]
pub(super) fn sun_place(days: f64) -> SunPlace {
    sun_place_with(days, &slow_terms(days))
}

/// The Sun's apparent place at `days` with slow terms evaluated nearby (within a day).
pub(super) fn sun_place_with(days: f64, slow: &SlowTerms) -> SunPlace {
    let t = centuries_tt(days);
    let t2 = t * t;
    let deg = f64::to_radians;

    // Geometric mean longitude, mean anomaly, eccentricity (Meeus 25.2-25.4).
    let l0 = 280.466_46 + 36_000.769_83 * t + 0.000_303_2 * t2;
    let m = deg(357.529_11 + 35_999.050_29 * t - 0.000_153_7 * t2);
    let e = 0.016_708_634 - 0.000_042_037 * t - 0.000_000_126_7 * t2;
    // Equation of the centre; sin 2M and sin 3M from sin M and cos M.
    let (sin_m, cos_m) = m.sin_cos();
    let sin_2m = 2.0 * sin_m * cos_m;
    let sin_3m = sin_m * (3.0 - 4.0 * sin_m * sin_m);
    let c = (1.914_602 - 0.004_817 * t - 0.000_014 * t2) * sin_m
        + (0.019_993 - 0.000_101 * t) * sin_2m
        + 0.000_289 * sin_3m;
    let anomaly = m + deg(c);
    let distance_au = 1.000_001_018 * (1.0 - e * e) / (1.0 + e * anomaly.cos()) + slow.distance_au;

    // Apparent longitude: true longitude, nutation, perturbations and annual aberration
    // (20.4898" / R).
    let apparent_longitude = deg(l0 + c + slow.longitude_deg - 20.4898 / 3600.0 / distance_au);
    let (sin_lon, cos_lon) = apparent_longitude.sin_cos();
    let ra = (slow.cos_obliquity * sin_lon).atan2(cos_lon);
    let dec = (slow.sin_obliquity * sin_lon).asin();

    // Greenwich mean sidereal time (Meeus 12.4, UT) plus the equation of the equinoxes.
    let tu = days / 36_525.0;
    let gmst = 280.460_618_37 + 360.985_647_366_29 * days + 0.000_387_933 * tu * tu
        - tu * tu * tu / 38_710_000.0;
    let gast = deg(gmst + slow.nutation_longitude_deg * slow.cos_obliquity);

    SunPlace {
        ra,
        dec,
        gast,
        distance_au,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Meeus example 25.a: 1992-10-13 0h TD, apparent RA 13h13m31.4s, dec -7 47' 06".
    #[test]
    fn meeus_example_25a() {
        let td_days = 2_448_908.5 - 2_451_545.0;
        let place = sun_place(td_days - DELTA_T_DAYS);
        let ra_hours = place.ra.rem_euclid(TAU).to_degrees() / 15.0;
        let expected_ra = 13.0 + 13.0 / 60.0 + 31.4 / 3600.0;
        let expected_dec = -(7.0 + 47.0 / 60.0 + 6.0 / 3600.0);
        // Within the theory's 0.01 degree (RA in hours: 0.01 / 15).
        assert!((ra_hours - expected_ra).abs() < 0.01 / 15.0, "{ra_hours}");
        assert!(
            (place.dec.to_degrees() - expected_dec).abs() < 0.01,
            "{}",
            place.dec.to_degrees()
        );
        assert!((place.distance_au - 0.99766).abs() < 0.0001);
    }

    /// Meeus example 12.a: 1987-04-10 0h UT, GMST 13h10m46.3668s (apparent 13h10m46.1351s).
    #[test]
    fn meeus_example_12a() {
        let days = 2_446_895.5 - 2_451_545.0;
        let place = sun_place(days);
        let gast_hours = place.gast.rem_euclid(TAU).to_degrees() / 15.0;
        let expected = 13.0 + 10.0 / 60.0 + 46.1351 / 3600.0;
        // The truncated nutation series keeps us within a few hundredths of a second.
        assert!(
            (gast_hours - expected).abs() * 3600.0 < 0.1,
            "{}",
            (gast_hours - expected) * 3600.0
        );
    }

    /// Apparent geocentric places from PyEphem 4.2.1 (`Sun.g_ra`, `Sun.g_dec`,
    /// `Observer.sidereal_time()` at longitude 0, `earth_distance`), in radians and AU.
    #[test]
    fn agrees_with_pyephem_places() {
        let reference = [
            (
                1_767_225_600,
                4.913_012_560_328_57,
                -0.401_726_436_253_376,
                1.756_887_504_824_067,
                0.983_365_833_759_307_9,
            ),
            (
                1_778_785_200,
                0.900_866_111_341_466_4,
                0.327_586_406_712_856_3,
                2.749_481_870_654_3,
                1.010_725_736_618_042,
            ),
            (
                1_790_866_800,
                3.277_110_593_202_878,
                -0.058_501_025_194_033_73,
                4.107_819_875_666_832,
                1.001_122_355_461_120_6,
            ),
            (
                1_802_948_400,
                5.788_649_499_910_657,
                -0.202_925_359_025_290_16,
                5.466_163_700_861_149,
                0.988_221_287_727_356,
            ),
            (
                1_815_030_000,
                1.872_379_061_396_714,
                0.392_469_459_136_526_6,
                0.541_308_888_822_974_3,
                1.016_690_254_211_425_8,
            ),
            (
                1_827_111_600,
                4.198_132_807_719_435,
                -0.360_907_537_375_748_1,
                1.899_631_566_732_005,
                0.987_297_415_733_337_4,
            ),
        ];
        let arcsec = |radians: f64| radians.to_degrees() * 3600.0;
        for (unix, ra, dec, gast, distance) in reference {
            let place = sun_place((unix as f64 - J2000_UNIX) / 86_400.0);
            assert!(
                arcsec(normalize_pi(place.ra - ra)).abs() < 10.0,
                "{unix} ra"
            );
            assert!(arcsec(place.dec - dec).abs() < 3.0, "{unix} dec");
            assert!(
                arcsec(normalize_pi(place.gast - gast)).abs() < 0.3,
                "{unix} gast"
            );
            assert!(
                (place.distance_au - distance).abs() < 1e-4,
                "{unix} distance {}",
                place.distance_au - distance
            );
        }
    }

    #[test]
    fn normalize_pi_stays_in_range() {
        use std::f64::consts::PI;
        for a in [-10.0, -PI, -1.0, 0.0, 1.0, PI, 4.0, 100.0] {
            let n = normalize_pi(a);
            assert!(n > -PI - 1e-12 && n <= PI + 1e-12, "{a} -> {n}");
            assert!(((a - n) / TAU - ((a - n) / TAU).round()).abs() < 1e-9);
        }
    }
}
