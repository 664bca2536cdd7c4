//! Realistic synthetic OBD logs (PSA DCM6.2 layout) for demos, tests and benchmarks.
//!
//! A log is one simulated drive: the logger starts with the engine off, the
//! engine starts and warms up, and a small state machine drives through idle,
//! city, road and highway phases. The FAP (particulate filter) loads slowly with
//! soot and, when asked, regenerates: REGEN = 1, the filter runs hot and the soot
//! burns off. Quirks of the real logger are kept on purpose because the analysis
//! must cope with them: cells stay empty while ECUs wake up, rows come every
//! 0.9/1.0 s, the logger sometimes pauses, and sensors sometimes report their
//! error sentinels (FAPpressure 65280, FAPtemp 25855).
//!
//! Everything derives from one seed through a private splitmix64, so the same
//! [`LogSpec`] always renders the same bytes.

use chrono::Datelike;

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(year as i32, month, day)
        .map_or(0, |d| i64::from(d.num_days_from_ce()) - UNIX_EPOCH_CE_DAYS)
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let date = i32::try_from(days + UNIX_EPOCH_CE_DAYS)
        .ok()
        .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
        .unwrap_or_default();
    (i64::from(date.year()), date.month(), date.day())
}

/// 1970-01-01 counted from 0001-01-01 (day 1).
const UNIX_EPOCH_CE_DAYS: i64 = 719_163;

use std::fmt::Write;

/// The logger's header line, trailing `;` included.
const HEADER: &str = "Date;Time;EGRposInstr;EGRpos;ExternalTemp;AirFlowSensor;AirManifold;\
AlternatorTemp;OilTemp;OilDilution;OilCarbon;Speed;GearA;GearB;AirCPress;FanSlowRelay;\
FanHighRelay;AncBattTemp;PowerAccuTemp;PowerAccuVolt;PowerAccuHealth;Inj.1FlowCorr;\
Inj.2FlowCorr;Inj.3FlowCorr;Inj.4FlowCorr;AirFlow;TurboGeomInstr;TurboVarGeom;AirMixerInstr;\
AirMixer;Coolant;Battery;FuelPressInstr;FuelPress;FuelFlowReg;InjFlow;FuelTemp;LowFuelPress;\
AtmosphPress;Revs;TurboInstr;Turbopress;FAPpressure;FAPtemp;AlternatorLoad;AlternatorSpeed;\
AncBattCharge;AccelPedalPos;OilPress;FAPsoot;FAPdeposits;FAPcinder;FAPAdditiveVol;\
FAPAdditiveRemain;LastRegen;Avg10regen;FAP life;FAPlifeLeft;Errors;REGEN;BR;CL;";

/// Engine rpm per km/h in gears 1 to 6.
const RPM_PER_KMH: [f64; 6] = [125.0, 64.0, 40.0, 29.0, 23.0, 19.0];

/// Upper bound on `target_bytes`, so an absurd spec cannot exhaust memory.
const MAX_BYTES: usize = 1 << 26;

/// Options for one generated log.
#[derive(Debug, Clone)]
pub struct LogSpec {
    pub seed: u64,
    /// Approximate size in bytes of the CSV to produce (e.g. 300_000); rows are added until reached.
    pub target_bytes: usize,
    /// Start of the drive, as (year, month, day, hour, minute, second).
    pub start: (u32, u32, u32, u32, u32, u32),
    /// Whether this drive contains a regeneration (REGEN = 1 phase).
    pub regeneration: bool,
}

/// splitmix64: tiny, fast, and good enough for plausible noise.
#[derive(Default)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Clamps a start to a real date and time; returns tenths of a second since 1970.
fn start_tenths(start: (u32, u32, u32, u32, u32, u32)) -> i64 {
    let (y, mo, d, h, mi, s) = start;
    let y = i64::from(y.clamp(1970, 9999));
    let mo = mo.clamp(1, 12);
    let next = if mo == 12 { (y + 1, 1) } else { (y, mo + 1) };
    let month_len = (days_from_civil(next.0, next.1, 1) - days_from_civil(y, mo, 1)) as u32;
    let day = days_from_civil(y, mo, d.clamp(1, month_len));
    let secs = i64::from(h.min(23) * 3600 + mi.min(59) * 60 + s.min(59));
    (day * 86_400 + secs) * 10
}

/// Appends `YYYY.MM.DD;HH:MM:SS.f;`.
fn push_stamp(out: &mut String, tenths: i64) {
    let (y, m, d) = civil_from_days(tenths.div_euclid(864_000));
    let t = tenths.rem_euclid(864_000);
    let (h, mi, s, f) = (t / 36_000, t / 600 % 60, t / 10 % 60, t % 10);
    let _ = write!(out, "{y:04}.{m:02}.{d:02};{h:02}:{mi:02}:{s:02}.{f};");
}

/// Rarely replaces a reading with the sensor's error sentinel, as the real sensors do.
fn sensor_glitch(rng: &mut Rng, value: f64, sentinel: f64) -> f64 {
    if rng.chance(0.004) { sentinel } else { value }
}

/// One cell's value and how the logger prints it.
#[derive(Clone, Copy)]
enum Cell {
    Int(f64),
    Dec(f64, usize),
    Text(&'static str),
}

impl Cell {
    fn push(self, out: &mut String) {
        let _ = match self {
            Cell::Int(v) => write!(out, "{}", v.round() as i64),
            // Decimal readings are never negative; the clamp also avoids "-0.00".
            Cell::Dec(v, n) => write!(out, "{:.*}", n, v.max(0.0)),
            Cell::Text(s) => write!(out, "{s}"),
        };
    }
}

/// Driving phases of the state machine; each has its own speed band.
#[derive(Clone, Copy, Default)]
enum Phase {
    #[default]
    Idle,
    City,
    Road,
    Highway,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Idle, Phase::City, Phase::Road, Phase::Highway];

    /// A new target speed; city traffic includes stops.
    fn target(self, rng: &mut Rng) -> f64 {
        match self {
            Phase::Idle => 0.0,
            Phase::City if rng.chance(0.2) => 0.0,
            Phase::City => rng.range(15.0, 50.0),
            Phase::Road => rng.range(50.0, 90.0),
            Phase::Highway => rng.range(90.0, 130.0),
        }
    }
}

/// The simulated car: slowly varying state plus per-drive constants.
#[derive(Default)]
struct Drive {
    rng: Rng,
    /// Data rows written so far.
    row: u32,
    /// The logger starts before the engine: these first rows have it off.
    engine_off_rows: u32,
    phase: Phase,
    /// Rows until the state machine picks the next phase.
    phase_left: u32,
    /// Speed the driver is heading for (km/h) and rows until a new one.
    target: f64,
    target_left: u32,
    /// km/h, and its change in km/h per second.
    speed: f64,
    accel: f64,
    gear: usize,
    shifted: bool,
    revs: f64,
    pedal: f64,
    /// Injected fuel, mg/stroke.
    inj: f64,
    /// Temperatures in °C; `warm_tau` is the warm-up time constant in seconds.
    ambient: f64,
    coolant: f64,
    oil: f64,
    warm_tau: f64,
    fap_temp: f64,
    soot: f64,
    km_since_regen: f64,
    /// Progress (fraction of the target size) from which a regeneration may start.
    regen_from: Option<f64>,
    /// Planned regeneration length in rows (5-20 min), and rows left while one runs.
    regen_rows: u32,
    regen_left: u32,
    /// Scales the wake-up rows of [`Drive::cells`]: some drives' ECUs answer sooner.
    wake_scale: f64,
    /// Seeds the per-drive constants (see [`Drive::cells`]).
    constants: u64,
}

impl Drive {
    fn new(spec: &LogSpec) -> Self {
        let mut rng = Rng(spec.seed);
        let month = f64::from(spec.start.1.clamp(1, 12));
        // Coldest in January, warmest in July, within 5-20 °C.
        let season = ((month - 1.0) * std::f64::consts::PI / 6.0).cos();
        let ambient = 12.5 - 7.5 * season + rng.range(-1.5, 1.5);
        // A drive that regenerates starts with a loaded filter, long after the last regeneration.
        let (soot, km) = match spec.regeneration {
            true => (rng.range(14.0, 20.0), rng.range(600.0, 900.0)),
            false => (rng.range(2.0, 16.0), rng.range(0.0, 600.0)),
        };
        Drive {
            engine_off_rows: 3 + (rng.next_u64() % 6) as u32,
            phase_left: 20 + (rng.next_u64() % 40) as u32,
            coolant: ambient + rng.range(0.0, 3.0),
            oil: ambient + rng.range(0.0, 3.0),
            warm_tau: rng.range(300.0, 550.0),
            regen_from: spec.regeneration.then(|| rng.range(0.2, 0.35)),
            regen_rows: rng.range(315.0, 1260.0) as u32,
            wake_scale: rng.range(0.55, 1.0),
            fap_temp: ambient,
            soot,
            km_since_regen: km,
            constants: rng.next_u64(),
            ambient,
            rng,
            ..Drive::default()
        }
    }

    /// Whether the engine runs (it starts after the first few rows and never stops).
    fn running(&self) -> bool {
        self.row >= self.engine_off_rows
    }

    /// Starts the regeneration once the car moves (or is late); ends it near the end of the log at the latest.
    fn schedule(&mut self, progress: f64) {
        if let Some(from) = self.regen_from {
            if self.running() && progress >= from && (self.speed > 15.0 || progress >= from + 0.1) {
                self.regen_from = None;
                self.regen_left = self.regen_rows.max(3);
                self.phase_left = 0;
            }
        } else if self.regen_left > 0 && progress >= 0.88 {
            self.regen_left = 1;
        }
    }

    /// Advances the simulation by `dt` seconds.
    fn advance(&mut self, dt: f64) {
        self.row += 1;
        if !self.running() {
            return;
        }
        self.drive_phases(dt);
        self.update_engine();
        // Warm-up towards the thermostat's temperature.
        // (Every step is capped at 1 so a long logger pause cannot overshoot.)
        let a = (dt / self.warm_tau).min(1.0);
        self.coolant += (91.0 - self.coolant) * a;
        self.oil += (93.0 - self.oil) * a * 0.85;
        // The filter follows exhaust heat; a regeneration heats it fast and burns the soot off.
        let regen = self.regen_left > 0;
        let load = 4.0 * self.inj + 0.8 * self.speed;
        let (hot, tau) = match regen {
            true => (500.0 + 0.4 * load + self.rng.range(-20.0, 20.0), 25.0),
            false => (120.0 + load, 45.0),
        };
        self.fap_temp += (hot - self.fap_temp) * (dt / tau).min(1.0);
        if regen && self.fap_temp > 430.0 {
            self.soot -= (self.soot - 0.3) * (dt / 240.0).min(1.0);
        } else {
            self.soot += 0.0004 * dt * (0.5 + self.inj / 20.0);
        }
        self.km_since_regen += self.speed * dt / 3600.0;
        if regen {
            self.regen_left -= 1;
            if self.regen_left == 0 {
                self.km_since_regen = 0.0;
            }
        }
    }

    /// The phase state machine (a random walk between neighbouring phases) and a speed that follows its target smoothly.
    fn drive_phases(&mut self, dt: f64) {
        if self.phase_left == 0 {
            // One phase down, the same, or one up (up twice as likely: traffic thins out).
            let step = [0, 1, 2, 2][(self.rng.next_u64() % 4) as usize];
            let mut next = (self.phase as usize + step).saturating_sub(1).min(3);
            if self.regen_left > 0 && next == 0 {
                next = 2; // regenerations run while driving
            }
            self.phase = Phase::ALL[next];
            self.phase_left = 40 + (self.rng.next_u64() % 260) as u32;
            self.target_left = 0;
        }
        if self.target_left == 0 {
            self.target = self.phase.target(&mut self.rng);
            self.target_left = 15 + (self.rng.next_u64() % 45) as u32;
        }
        self.phase_left -= 1;
        self.target_left -= 1;
        let before = self.speed;
        let change = (self.target - before).clamp(-3.0 * dt, 1.8 * dt);
        self.speed = (before + change).max(0.0);
        self.accel = (self.speed - before) / dt;
    }

    /// Gear, revs, pedal and injected fuel consistent with speed and acceleration.
    fn update_engine(&mut self) {
        let shift_speeds = [3.0, 15.0, 28.0, 42.0, 60.0, 85.0];
        let gear = shift_speeds.iter().filter(|v| self.speed >= **v).count();
        self.shifted = gear != self.gear;
        self.gear = gear;
        let regen = if self.regen_left > 0 { 1.0 } else { 0.0 };
        if gear == 0 {
            // Idle; a regeneration raises it and adds post-injection.
            self.revs = 790.0 + 100.0 * regen + self.rng.range(-40.0, 40.0);
            self.pedal = 0.0;
            self.inj = 6.5 + 3.0 * regen + self.rng.range(-1.2, 1.2);
            return;
        }
        let rpm = (self.speed * RPM_PER_KMH[gear - 1]).max(850.0);
        self.revs = rpm + self.rng.range(-25.0, 25.0);
        let demand = 6.0 + 0.22 * self.speed + 18.0 * self.accel.max(0.0);
        let braking = self.accel < -0.5;
        self.pedal = if braking {
            0.0
        } else {
            (demand + self.rng.range(-2.0, 2.0)).clamp(0.0, 100.0)
        };
        // Overrun (pedal released) cuts injection entirely.
        let fuel = 4.0 + 0.55 * self.pedal + 0.002 * self.revs + 3.0 * regen;
        self.inj = if self.pedal > 0.0 { fuel } else { 0.0 };
    }

    /// The row's cells after Date/Time in header order, each with the row from
    /// which its ECU answers (slow ECUs late, the FAP additive block after minutes).
    fn cells(&mut self) -> [(u16, Cell); 60] {
        use Cell::{Dec, Int, Text};
        let on = if self.running() { 1.0 } else { 0.0 };
        let (amb, inj, revs, speed) = (self.ambient, self.inj, self.revs, self.speed);
        let warm = self.coolant - amb;
        // Same seed every row: the ECU's stored values stay constant through the drive.
        let mut k = Rng(self.constants);
        let atmosph = k.range(995.0, 1025.0);
        let rest_battery = k.range(12.2, 12.9);
        let fap_life = k.range(5_000.0, 60_000.0);
        let inj_corr = [0; 4].map(|_| k.range(0.85, 1.15));
        // EGR recirculates only on a warm engine at part load.
        let egr_ok = on > 0.0 && self.coolant > 40.0 && inj > 0.0 && inj < 25.0;
        let egr = if egr_ok { 45.0 - 1.2 * inj } else { 0.0 };
        let egr_pos = on * (egr * 1.1 + self.rng.range(-2.0, 2.0)).clamp(0.0, 100.0);
        let mixer = if egr_ok { 60.0 + egr.min(40.0) } else { 0.0 };
        let vgt = on * (85.0 - 1.2 * inj).max(0.0);
        let vgt_pos = (vgt + on * self.rng.range(-3.0, 3.0)).clamp(0.0, 100.0);
        let air = on * (350.0 + 12.0 * inj + 0.05 * revs).min(1000.0);
        // Rail pressure: the last request stays latched while the engine is off.
        let rail_running = (230.0 + 0.22 * revs + 14.0 * inj).min(1600.0);
        let rail = if on > 0.0 { rail_running } else { 340.0 };
        let rail_real = on * rail * self.rng.range(0.96, 1.04) + self.rng.range(0.0, 3.0);
        let fuel_reg = 13.0 + on * (0.8 * inj - 1.0).min(48.0);
        let boost = ((inj - 8.0).max(0.0) * 28.0 * (revs / 2000.0).min(1.2)).min(1000.0);
        let turbo = 1000.0 + on * boost;
        let turbo_real = turbo + self.rng.range(-40.0, 40.0);
        let turbo_real = if on > 0.0 { turbo_real } else { atmosph };
        // Back-pressure grows with exhaust flow and with the soot load.
        let flow = revs / 1000.0 * (1.0 + inj / 20.0);
        let fap_p = 3.0 * on + 6.0 * flow.powf(1.3) * (1.0 + self.soot / 50.0);
        let fap_p = sensor_glitch(&mut self.rng, fap_p, 65280.0);
        let fap_t = sensor_glitch(&mut self.rng, self.fap_temp, 25855.0);
        let charging = 14.4 + self.rng.range(-0.15, 0.15);
        let battery = if on > 0.0 { charging } else { rest_battery };
        let alternator = (revs * 3.0 / 75.0).round() * 75.0;
        let gear = ["N", "1", "2", "3", "4", "5", "6"][self.gear];
        let flag = |b: bool| Int(if b { 1.0 } else { 0.0 });
        [
            (0, Int(egr)),                             // EGRposInstr
            (1, Int(egr_pos)),                         // EGRpos
            (18, Int(amb)),                            // ExternalTemp
            (4, Int(amb + 0.1 * warm)),                // AirFlowSensor
            (4, Int(amb + 5.0 + 0.3 * warm)),          // AirManifold
            (9, Int(amb + 0.45 * warm)),               // AlternatorTemp
            (4, Int(self.oil)),                        // OilTemp
            (3, Int(k.range(0.0, 3.0))),               // OilDilution
            (2, Int(1.0)),                             // OilCarbon
            (0, Int(speed)),                           // Speed
            (2, Text("M")),                            // GearA
            (0, Text(gear)),                           // GearB
            (9, Dec(k.range(4.0, 10.4), 2)),           // AirCPress
            (14, flag(self.coolant > 94.0)),           // FanSlowRelay
            (14, Int(0.0)),                            // FanHighRelay
            (16, Int(k.range(-11.0, 0.0))),            // AncBattTemp
            (13, Int(amb + 2.0)),                      // PowerAccuTemp
            (13, Int(5.0)),                            // PowerAccuVolt
            (13, Int(k.range(25.0, 35.0))),            // PowerAccuHealth
            (1, Dec(inj_corr[0], 2)),                  // Inj.1FlowCorr
            (2, Dec(inj_corr[1], 2)),                  // Inj.2FlowCorr
            (2, Dec(inj_corr[2], 2)),                  // Inj.3FlowCorr
            (1, Dec(inj_corr[3], 2)),                  // Inj.4FlowCorr
            (0, Int(air)),                             // AirFlow
            (1, Int(vgt)),                             // TurboGeomInstr
            (2, Int(vgt_pos)),                         // TurboVarGeom
            (2, Int(0.6 * egr - 5.0)),                 // AirMixerInstr
            (3, Int(mixer)),                           // AirMixer
            (15, Int(self.coolant)),                   // Coolant
            (1, Dec(battery, 2)),                      // Battery
            (0, Int(rail)),                            // FuelPressInstr
            (0, Int(rail_real)),                       // FuelPress
            (0, Int(fuel_reg)),                        // FuelFlowReg
            (0, Dec((inj * 16.0).round() / 16.0, 2)),  // InjFlow, in the ECU's 1/16 steps
            (14, Int(amb + 0.15 * warm)),              // FuelTemp
            (2, Int(1.0 + 4.0 * on)),                  // LowFuelPress
            (30, Int(atmosph)),                        // AtmosphPress
            (0, Int(revs)),                            // Revs
            (0, Int(turbo)),                           // TurboInstr
            (1, Int(turbo_real)),                      // Turbopress
            (1, Int(fap_p)),                           // FAPpressure
            (2, Int(fap_t)),                           // FAPtemp
            (2, Int(on * self.rng.range(20.0, 55.0))), // AlternatorLoad
            (1, Int(alternator)),                      // AlternatorSpeed
            (14, Int(k.range(86.0, 96.0))),            // AncBattCharge
            (1, Int(self.pedal)),                      // AccelPedalPos
            (2, Int((1.0 + revs / 450.0).min(8.0))),   // OilPress
            (5, Dec(self.soot, 2)),                    // FAPsoot
            (170, Int(k.range(0.0, 5.0))),             // FAPdeposits
            (172, Int(k.range(0.0, 4.0))),             // FAPcinder
            (168, Int(1260.0)),                        // FAPAdditiveVol
            (168, Int(k.range(300.0, 1000.0))),        // FAPAdditiveRemain
            (29, Int(self.km_since_regen.floor())),    // LastRegen
            (28, Int(k.range(650.0, 900.0))),          // Avg10regen
            (165, Int(fap_life)),                      // FAP life
            (176, Int(180_000.0 - 1.5 * fap_life)),    // FAPlifeLeft
            (0, Int(0.0)),                             // Errors
            (0, flag(self.regen_left > 0)),            // REGEN
            (3, flag(self.accel < -1.0)),              // BR
            (3, flag(self.shifted)),                   // CL
        ]
    }

    /// Appends the current row's cells; a column whose ECU has not answered yet stays empty.
    fn push_row(&mut self, out: &mut String) {
        for (first, cell) in self.cells() {
            if f64::from(self.row) >= f64::from(first) * self.wake_scale {
                cell.push(out);
            }
            out.push(';');
        }
        out.push('\n');
    }
}

/// Renders one log as CSV bytes, deterministic for the same spec.
pub fn generate_log(spec: &LogSpec) -> Vec<u8> {
    let target = spec.target_bytes.min(MAX_BYTES);
    let mut out = String::with_capacity(target + 1024);
    out.push_str(HEADER);
    out.push('\n');
    let mut drive = Drive::new(spec);
    let mut pause_at = drive.rng.chance(0.35).then(|| drive.rng.range(0.3, 0.8));
    let mut tenths = start_tenths(spec.start);
    let mut rows = 0u64;
    while rows < 2 || out.len() < target {
        let progress = out.len() as f64 / target.max(1) as f64;
        drive.schedule(progress);
        push_stamp(&mut out, tenths);
        drive.push_row(&mut out);
        // The real logger alternates 0.9 s and 1.0 s, with an occasional slow 1.1 s.
        let slow = drive.rng.chance(0.02);
        let mut step = if slow { 11 } else { 9 + (rows % 2) as i64 };
        if pause_at.is_some_and(|at| progress >= at) {
            pause_at = None;
            step += (drive.rng.range(30.0, 600.0) * 10.0) as i64;
        }
        drive.advance(step as f64 / 10.0);
        tenths += step;
        rows += 1;
    }
    out.into_bytes()
}

/// A spec derived from (seed, index): date spread over 2024-2025 (varied months), ~1/3 with regeneration, sizes around target_bytes (±30%).
pub fn spec_for(seed: u64, index: usize, target_bytes: usize) -> LogSpec {
    let mut rng = Rng(seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let day = days_from_civil(2024, 1, 1) + (rng.next_u64() % 731) as i64;
    let (y, m, d) = civil_from_days(day);
    let clock = rng.next_u64();
    let (h, mi, s) = (6 + clock % 16, (clock >> 8) % 60, (clock >> 16) % 60);
    LogSpec {
        seed: rng.next_u64(),
        target_bytes: (target_bytes as f64 * rng.range(0.7, 1.3)) as usize,
        start: (y as u32, m, d, h as u32, mi as u32, s as u32),
        // Every third index exactly, so even a handful of logs includes regenerations.
        regeneration: (index as u64).wrapping_add(seed).is_multiple_of(3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64, target_bytes: usize, regeneration: bool) -> LogSpec {
        LogSpec {
            seed,
            target_bytes,
            start: (2025, 2, 5, 7, 58, 57),
            regeneration,
        }
    }

    fn text(spec: &LogSpec) -> String {
        String::from_utf8(generate_log(spec)).expect("generated logs are ASCII")
    }

    /// Data rows split into cells (the last, empty one follows the trailing `;`).
    fn rows(log: &str) -> Vec<Vec<&str>> {
        log.lines()
            .skip(1)
            .map(|l| l.split(';').collect::<Vec<_>>())
            .collect()
    }

    fn column(name: &str) -> usize {
        HEADER
            .split(';')
            .position(|h| h == name)
            .expect("known column")
    }

    #[test]
    fn same_spec_same_bytes_other_seed_other_bytes() {
        let a = spec(7, 50_000, true);
        assert_eq!(generate_log(&a), generate_log(&a));
        assert_ne!(generate_log(&a), generate_log(&spec(8, 50_000, true)));
    }

    #[test]
    fn header_and_separators_match_the_real_logger() {
        let real = "Date;Time;EGRposInstr;EGRpos;ExternalTemp;AirFlowSensor;AirManifold;AlternatorTemp;OilTemp;OilDilution;OilCarbon;Speed;GearA;GearB;AirCPress;FanSlowRelay;FanHighRelay;AncBattTemp;PowerAccuTemp;PowerAccuVolt;PowerAccuHealth;Inj.1FlowCorr;Inj.2FlowCorr;Inj.3FlowCorr;Inj.4FlowCorr;AirFlow;TurboGeomInstr;TurboVarGeom;AirMixerInstr;AirMixer;Coolant;Battery;FuelPressInstr;FuelPress;FuelFlowReg;InjFlow;FuelTemp;LowFuelPress;AtmosphPress;Revs;TurboInstr;Turbopress;FAPpressure;FAPtemp;AlternatorLoad;AlternatorSpeed;AncBattCharge;AccelPedalPos;OilPress;FAPsoot;FAPdeposits;FAPcinder;FAPAdditiveVol;FAPAdditiveRemain;LastRegen;Avg10regen;FAP life;FAPlifeLeft;Errors;REGEN;BR;CL;";
        let log = text(&spec(1, 100_000, true));
        assert!(log.ends_with(";\n"));
        let mut lines = log.lines();
        assert_eq!(lines.next(), Some(real));
        let expected = real.matches(';').count();
        assert!(lines.all(|l| l.matches(';').count() == expected && l.ends_with(';')));
    }

    #[test]
    fn size_is_close_to_target() {
        for (seed, target) in [(1, 300_000), (2, 300_000), (3, 20_000), (4, 20_000)] {
            for regeneration in [false, true] {
                let len = generate_log(&spec(seed, target, regeneration)).len() as f64;
                assert!(
                    (len / target as f64 - 1.0).abs() <= 0.2,
                    "{len} for {target}"
                );
            }
        }
    }

    #[test]
    fn timestamps_strictly_increase() {
        for index in 0..6 {
            let log = text(&spec_for(42, index, 60_000));
            // Fixed-width, zero-padded date and time compare correctly as text.
            let stamps: Vec<String> = rows(&log)
                .iter()
                .map(|r| format!("{} {}", r[0], r[1]))
                .collect();
            assert!(stamps.windows(2).all(|w| w[0] < w[1]), "log {index}");
        }
    }

    #[test]
    fn regeneration_runs_hot_and_burns_soot() {
        let log = text(&spec(11, 300_000, true));
        let (regen, temp, soot) = (column("REGEN"), column("FAPtemp"), column("FAPsoot"));
        let hot: Vec<_> = rows(&log).into_iter().filter(|r| r[regen] == "1").collect();
        assert!(hot.len() >= 200, "{} REGEN rows", hot.len());
        let in_band = hot.iter().filter(|r| {
            r[temp]
                .parse::<f64>()
                .is_ok_and(|t| t > 450.0 && t <= 700.0)
        });
        assert!(in_band.count() * 2 > hot.len());
        let soot_at = |r: &Vec<&str>| r[soot].parse::<f64>().unwrap_or(f64::NAN);
        assert!(soot_at(&hot[hot.len() - 1]) < soot_at(&hot[0]) / 2.0);
    }

    #[test]
    fn no_regeneration_means_no_regen_row() {
        let log = text(&spec(12, 300_000, false));
        let regen = column("REGEN");
        assert!(rows(&log).iter().all(|r| r[regen] == "0"));
    }

    #[test]
    fn weird_specs_are_clamped() {
        let log = text(&LogSpec {
            seed: 0,
            target_bytes: 0,
            start: (0, 13, 40, 99, 99, 99),
            regeneration: true,
        });
        assert_eq!(log.lines().count(), 3);
        assert!(
            log.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("1970.12.31;23:59:59.0;"))
        );
    }
}
