//! `kith-bench hl7-corpus` and `kith-bench hl7-parse`: how fast `kith_hl7::parse` reads HL7
//! v2 messages, on a corpus that its peers (`bench/hl7/`) read too.
//!
//! `hl7-corpus` writes a deterministic corpus of realistic HL7 v2.4 ER7 messages: ADT
//! (A28, A31, A01, A08), ORU^R01, MDM^T02 and SIU (S12, S15), with NHS numbers in the 999
//! test range, hospital numbers, UTF-8 names and escape sequences in free text. Segments
//! end with CR; each message is followed by one LF, so a reader splits the file on CR LF and
//! gives each message back its final CR (no message contains an LF).
//!
//! `hl7-parse` loads such a corpus, checks that every message parses with no error problem,
//! then parses the whole corpus again and again on one thread and reports messages and MB
//! per second (the median of the runs), in the `RESULT` line format its peers print too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kith_core::patient::NhsNumber;
use kith_hl7::{Severity, parse};

use crate::Failure;
use crate::access::{SplitMix, group};

pub const CORPUS_USAGE: &str = "\
usage: kith-bench hl7-corpus --out FILE [--count N] [--feed]

  --out FILE    where to write the corpus (replaced if it exists)
  --count N     number of messages (default 20000)
  --feed        a feed that a receiver can file (bench/hl7/mllp), instead of independent
                messages: patients one after another, each with a unique NHS number and
                hospital number (authority RXH-MRN), their first message an ADT^A28 or A01
                that creates the record, then 2 to 6 updates, results, documents and
                appointments about them, with the same mix of types; every message from
                sending facility RXH; ZTM segments add the patient to teams mh, gum,
                cardiology, diabetes or maternity and discharge them only from a team they
                are in

The corpus is deterministic: the same N (and --feed) gives the same bytes. Segments end with CR and
each message is followed by one LF: split the file on CR LF and put back each message's
final CR.";

pub const PARSE_USAGE: &str = "\
usage: kith-bench hl7-parse --corpus FILE [--seconds S] [--runs N]

  --corpus FILE  a corpus written by `kith-bench hl7-corpus`
  --seconds S    minimum duration of each timed run (default 5)
  --runs N       timed runs; the median is reported (default 3)";

const DEFAULT_COUNT: usize = 20_000;
const SEED: u64 = 0x4837_5632_4B49_5448;
const WARM_UP: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/// `--flag value` pairs; `-h`/`--help` prints `usage` and exits.
fn flag_values(args: &[String], usage: &str) -> Result<Vec<(String, String)>, Failure> {
    let mut pairs = Vec::new();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{usage}");
            std::process::exit(0);
        }
        let value = args.next().ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))?;
        pairs.push((flag.clone(), value.clone()));
    }
    Ok(pairs)
}

fn positive_count(flag: &str, value: &str) -> Result<usize, Failure> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Failure::Usage(format!("{flag} needs a positive whole number, not {value:?}")))
}

// ---------------------------------------------------------------------------------------
// hl7-corpus
// ---------------------------------------------------------------------------------------

pub fn corpus(args: &[String]) -> Result<(), Failure> {
    let mut out = None;
    let mut count = DEFAULT_COUNT;
    let feed = args.iter().any(|arg| arg == "--feed");
    let args: Vec<String> = args.iter().filter(|arg| *arg != "--feed").cloned().collect();
    for (flag, value) in flag_values(&args, CORPUS_USAGE)? {
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(value)),
            "--count" => count = positive_count(&flag, &value)?,
            other => return Err(Failure::Usage(format!("unknown option {other:?}"))),
        }
    }
    let out = out.ok_or_else(|| Failure::Usage("--out FILE is required".to_owned()))?;

    let mut generator = Generator::new();
    let mut feed = feed.then(Feed::new);
    let mut pending = std::collections::VecDeque::new();
    let mut patients = 0usize;
    let mut file = Vec::with_capacity(count * 560);
    let mut mix: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
    let (mut smallest, mut largest) = (usize::MAX, 0);
    let (mut with_escapes, mut non_ascii, mut segments) = (0, 0, 0);
    for _ in 0..count {
        let (kind, message) = match &mut feed {
            None => generator.message(),
            Some(feed) => loop {
                if let Some(next) = pending.pop_front() {
                    break next;
                }
                pending.extend(feed.patient_messages().map_err(Failure::Run)?);
                patients += 1;
            },
        };
        let entry = mix.entry(kind.name()).or_default();
        entry.0 += 1;
        entry.1 += message.len();
        smallest = smallest.min(message.len());
        largest = largest.max(message.len());
        with_escapes += usize::from(has_escape_sequence(&message));
        non_ascii += usize::from(!message.is_ascii());
        segments += message.matches('\r').count();
        file.extend_from_slice(message.as_bytes());
        file.push(b'\n');
    }
    try_to!(format!("write {}", out.display()), std::fs::write(&out, &file));

    let bytes = file.len() - count;
    println!(
        "wrote {}: {} messages, {} segments, {} bytes of messages (mean {:.1} bytes, min {smallest}, max {largest})",
        out.display(),
        group(count as u64),
        group(segments as u64),
        group(bytes as u64),
        bytes as f64 / count as f64
    );
    if feed.is_some() {
        println!(
            "  a feed about {} patients, from sending facility {FEED_FACILITY} (the last patient may be cut short)",
            group(patients as u64)
        );
    }
    println!("  {:<10} {:>8} {:>7} {:>11}", "type", "messages", "share", "mean bytes");
    for (name, (messages, size)) in &mix {
        println!(
            "  {name:<10} {:>8} {:>6.1}% {:>11.1}",
            group(*messages as u64),
            100.0 * *messages as f64 / count as f64,
            *size as f64 / *messages as f64
        );
    }
    println!(
        "  {} messages with escape sequences, {} with non-ASCII (UTF-8) text; FNV-1a 64 of the file {:016x}",
        group(with_escapes as u64),
        group(non_ascii as u64),
        fnv1a(&file)
    );
    Ok(())
}

fn has_escape_sequence(message: &str) -> bool {
    [r"\F\", r"\S\", r"\T\", r"\E\", r"\.br\"].iter().any(|sequence| message.contains(sequence))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The message types of the corpus, for its mix.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    AdtA28,
    AdtA31,
    AdtA01,
    AdtA08,
    OruR01,
    MdmT02,
    SiuS12,
    SiuS15,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::AdtA28 => "ADT^A28",
            Kind::AdtA31 => "ADT^A31",
            Kind::AdtA01 => "ADT^A01",
            Kind::AdtA08 => "ADT^A08",
            Kind::OruR01 => "ORU^R01",
            Kind::MdmT02 => "MDM^T02",
            Kind::SiuS12 => "SIU^S12",
            Kind::SiuS15 => "SIU^S15",
        }
    }
}

const FACILITIES: &[&str] = &["RXH", "RTH", "RJ1", "RR8"];
/// Names for generated patients (also used by the fhir generator).
pub(crate) const FAMILY_NAMES: &[&str] = &[
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Khan",
    "O'Brien",
    "Okafor",
    "Nowak",
    "Ní Bhriain",
    "Müller",
    "Şahin",
    "Kowalczyk",
    "Hughes",
    "Begum",
    "Ahmed",
    "MacLeod",
];
pub(crate) const GIVEN_NAMES: &[&str] = &[
    "Oliver",
    "Amelia",
    "George",
    "Isla",
    "Harry",
    "Ava",
    "Noah",
    "Mia",
    "Jack",
    "Ivy",
    "Mohammed",
    "Freya",
    "Siân",
    "Zoë",
    "Oisín",
    "Ngozi",
    "Aleksandra",
    "Rhys",
    "Priya",
    "Chloé",
    "Thomas",
    "Grace",
    "Dafydd",
    "Fatima",
];
const STREETS: &[&str] = &[
    "High Street",
    "Station Road",
    "Church Lane",
    "Park Avenue",
    "Victoria Road",
    "Mill Lane",
    "Queens Drive",
    "The Crescent",
    "Manor Way",
    "Kirkgate",
];
const TOWNS: &[(&str, &str)] = &[
    ("Leeds", "LS1"),
    ("Bradford", "BD7"),
    ("Harrogate", "HG2"),
    ("Wakefield", "WF1"),
    ("York", "YO31"),
    ("Halifax", "HX3"),
    ("Manchester", "M14"),
    ("Sheffield", "S10"),
];
const WARDS: &[&str] = &["WARD14", "AMU", "CCU", "WARD7", "MATERNITY", "ED"];
const SPECIALTIES: &[(&str, &str)] = &[
    ("100", "General Surgery"),
    ("300", "General Medicine"),
    ("320", "Cardiology"),
    ("710", "Adult Mental Illness"),
    ("502", "Gynaecology"),
    ("420", "Paediatrics"),
];
const CLINICS: &[&str] = &["CARDOPD", "GUM", "CMHT", "DIAB", "RESP", "FRACTURE"];
const TEAMS: &[&str] = &["mh", "gum", "cardiology", "diabetes", "prt", "maternity"];

/// A test reported in an OBX: numeric with units and a reference range, or one of a few
/// words.
enum Test {
    Numeric { code: &'static str, name: &'static str, units: &'static str, low: f64, high: f64, decimals: usize },
    Words { code: &'static str, name: &'static str, values: &'static [&'static str] },
}

struct Panel {
    code: &'static str,
    name: &'static str,
    department: &'static str,
    specimen: &'static str,
    tests: &'static [Test],
}

const fn nm(code: &'static str, name: &'static str, units: &'static str, low: f64, high: f64, decimals: usize) -> Test {
    Test::Numeric { code, name, units, low, high, decimals }
}

const PANELS: &[Panel] = &[
    Panel {
        code: "FBC",
        name: "Full blood count",
        department: "HAEM",
        specimen: "EDTA",
        tests: &[
            nm("HB", "Haemoglobin", "g/L", 115.0, 165.0, 0),
            nm("WBC", "White cell count", r"10\S\9/L", 4.0, 11.0, 1),
            nm("PLT", "Platelets", r"10\S\9/L", 150.0, 400.0, 0),
            nm("RBC", "Red cell count", r"10\S\12/L", 3.8, 5.8, 2),
            nm("HCT", "Haematocrit", "L/L", 0.37, 0.47, 3),
            nm("MCV", "Mean cell volume", "fL", 80.0, 100.0, 0),
        ],
    },
    Panel {
        code: "UE",
        name: r"Urea \T\ electrolytes",
        department: "CHEM",
        specimen: "SERUM",
        tests: &[
            nm("NA", "Sodium", "mmol/L", 133.0, 146.0, 0),
            nm("K", "Potassium", "mmol/L", 3.5, 5.3, 1),
            nm("UREA", "Urea", "mmol/L", 2.5, 7.8, 1),
            nm("CREA", "Creatinine", "umol/L", 59.0, 104.0, 0),
            nm("EGFR", "eGFR (CKD-EPI)", "mL/min/1.73m2", 60.0, 120.0, 0),
        ],
    },
    Panel {
        code: "LFT",
        name: "Liver function tests",
        department: "CHEM",
        specimen: "SERUM",
        tests: &[
            nm("ALT", "Alanine transaminase", "U/L", 0.0, 40.0, 0),
            nm("ALP", "Alkaline phosphatase", "U/L", 30.0, 130.0, 0),
            nm("BILI", "Bilirubin", "umol/L", 0.0, 21.0, 0),
            nm("ALB", "Albumin", "g/L", 35.0, 50.0, 0),
            nm("GGT", "Gamma GT", "U/L", 0.0, 55.0, 0),
        ],
    },
    Panel {
        code: "LIPID",
        name: "Lipid profile",
        department: "CHEM",
        specimen: "SERUM",
        tests: &[
            nm("CHOL", "Total cholesterol", "mmol/L", 0.0, 5.0, 1),
            nm("HDL", "HDL cholesterol", "mmol/L", 1.0, 2.0, 1),
            nm("LDL", "LDL cholesterol", "mmol/L", 0.0, 3.0, 1),
            nm("TRIG", "Triglycerides", "mmol/L", 0.0, 1.7, 1),
        ],
    },
    Panel {
        code: "HBA1C",
        name: "HbA1c",
        department: "CHEM",
        specimen: "EDTA",
        tests: &[
            nm("HBA1C", "HbA1c (IFCC)", "mmol/mol", 20.0, 41.0, 0),
            nm("GLU", "Glucose", "mmol/L", 3.0, 7.8, 1),
            nm("CREA", "Creatinine", "umol/L", 59.0, 104.0, 0),
        ],
    },
    Panel {
        code: "URINE",
        name: "Urine microscopy and culture",
        department: "MICRO",
        specimen: "MSU",
        tests: &[
            Test::Words { code: "APP", name: "Appearance", values: &["Clear", "Cloudy", "Blood stained"] },
            Test::Words { code: "LEUC", name: "Leucocytes", values: &["Negative", "Trace", "1+", "2+"] },
            Test::Words { code: "NIT", name: "Nitrite", values: &["Negative", "Positive"] },
            nm("WCC", "White cells", "/uL", 0.0, 10.0, 0),
            Test::Words {
                code: "CULT",
                name: "Culture",
                values: &[
                    "No significant growth",
                    r"Mixed growth \T\ possible contamination",
                    "E. coli >10\\S\\5 cfu/mL",
                ],
            },
        ],
    },
];

const LAB_NOTES: &[&str] = &[
    r"Sample slightly haemolysed\.br\Potassium may be falsely raised",
    r"Non-fasting sample\.br\Interpret lipids with caution",
    r"Telephoned to ward \T\ GP surgery at 10:42",
    r"Report also filed under K:\E\Results\E\2026",
    r"Analyser flags: HIL\F\ICT checked and released",
    "Please note new reference ranges from 1 April 2026",
    "Results reviewed by the duty biochemist",
    r"Repeat in 3 months\.br\Sooner if clinically indicated",
];

const DOCUMENT_TYPES: &[(&str, &str)] = &[
    ("CP", "Care plan"),
    ("DS", "Discharge summary"),
    ("CL", "Clinic letter"),
    ("CN", "Consultation note"),
    ("PN", "Progress note"),
    ("RA", "Risk assessment"),
];

const DOCUMENT_LINES: &[&str] = &[
    r"Seen today in clinic with her daughter.\.br\Mood improved since last review.",
    r"Plan: continue sertraline 100 mg \T\ review in 6 weeks.",
    r"Letter copied to GP \T\ community team; original filed in D:\E\letters.",
    r"Crisis numbers: 0800 123 4567 \F\ NHS 111 option 2.",
    r"Safety plan reviewed\.br\Keep medication in a locked box\.br\Call the crisis line if needed.",
    "Patient's preferred name: Siân. Interpreter not required.",
    "No known drug allergies. Weight 72.4 kg, BMI 24.1.",
    "Discharged home with district nurse follow-up for wound care.",
    "Blood pressure 132/84 mmHg, pulse 72 regular, SpO2 97% on air.",
    r"Bloods: WBC 11.2 x10\S\9/L, CRP 14 mg/L; repeat next week.",
];

const APPOINTMENT_REASONS: &[(&str, &str)] = &[
    ("FU", "Follow-up"),
    ("NEW", "New patient"),
    ("MED", r"Review \T\ medication check"),
    ("RES", "Results discussion"),
    ("PRE", "Pre-operative assessment"),
];

const SERVICES: &[(&str, &str)] = &[
    ("CARD", "Cardiology clinic"),
    ("CMHT", "Community mental health review"),
    ("DIAB", "Diabetes clinic"),
    ("GUM", "Sexual health clinic"),
    ("RESP", "Respiratory clinic"),
];

const LOCATIONS: &[(&str, &str)] =
    &[("OPD2", "Outpatients 2"), ("OPD5", "Outpatients 5"), ("CMHTB", "Beech House"), ("WARD14", "Ward 14 day room")];

/// Writes the corpus's messages, one after another, always the same ones.
pub(crate) struct Generator {
    rng: SplitMix,
    sequence: u64,
}

/// A patient as every message type writes them in PID.
struct Patient {
    nhs: String,
    mrn: String,
    facility: &'static str,
    family: &'static str,
    given: &'static str,
    birth_date: String,
    sex: &'static str,
    /// The address PID-13 gives (one message in three); `None`: a new one each time.
    email: Option<String>,
}

impl Generator {
    pub(crate) fn new() -> Self {
        Generator { rng: SplitMix(SEED), sequence: 0 }
    }

    fn below(&mut self, bound: usize) -> usize {
        self.rng.below(bound as u64) as usize
    }

    fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn digits(&mut self, count: usize) -> String {
        (0..count).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }

    /// A timestamp in 2026, to the second.
    fn timestamp(&mut self) -> String {
        format!(
            "2026{:02}{:02}{:02}{:02}{:02}",
            self.between(1, 12),
            self.between(1, 28),
            self.between(7, 19),
            self.below(60),
            self.below(60)
        )
    }

    /// A valid NHS number in the 999 range, kept for testing.
    fn nhs_number(&mut self) -> String {
        loop {
            let mut digits = vec![9, 9, 9];
            digits.extend((0..6).map(|_| self.below(10) as u32));
            if let Some(check) = NhsNumber::check_digit(&digits) {
                digits.push(check);
                return digits.iter().map(|d| char::from_digit(*d, 10).unwrap_or('0')).collect();
            }
        }
    }

    fn patient(&mut self) -> Patient {
        Patient {
            nhs: self.nhs_number(),
            mrn: format!("K{}", self.digits(7)),
            facility: self.pick(FACILITIES),
            family: self.pick(FAMILY_NAMES),
            given: self.pick(GIVEN_NAMES),
            birth_date: format!("{}{:02}{:02}", self.between(1930, 2024), self.between(1, 12), self.between(1, 28)),
            sex: self.pick(&["F", "M", "F", "M", "U"]),
            email: None,
        }
    }

    /// `…|{control id}|P|2.4|||AL|NE|GBR|UNICODE UTF-8`.
    fn msh(&mut self, out: &mut String, application: &str, facility: &str, kind: &str, prefix: &str) -> String {
        self.sequence += 1;
        let timestamp = self.timestamp();
        let _ = write!(
            out,
            "MSH|^~\\&|{application}|{facility}|KITH|KITH|{timestamp}||{kind}|{prefix}{:08}|P|2.4|||AL|NE|GBR|UNICODE UTF-8\r",
            self.sequence
        );
        timestamp
    }

    /// PID-3 with the NHS number and the hospital number; the full form with an address and
    /// telephone numbers (ADT) or the short one (results, documents, appointments).
    fn pid(&mut self, out: &mut String, patient: &Patient, full: bool) {
        let _ = write!(
            out,
            "PID|1||{}^^^NHS^NH~{}^^^{}-MRN^MR||{}^{}",
            patient.nhs, patient.mrn, patient.facility, patient.family, patient.given
        );
        if full {
            let middle = if self.chance(3) { self.pick(GIVEN_NAMES) } else { "" };
            let title = match patient.sex {
                "F" => self.pick(&["Ms", "Mrs", "Miss", "Dr"]),
                "M" => self.pick(&["Mr", "Dr"]),
                _ => "Mx",
            };
            let _ = write!(out, "^{middle}^^{title}");
        }
        let _ = write!(out, "||{}|{}", patient.birth_date, patient.sex);
        if full {
            let (town, district) = self.pick(TOWNS);
            let _ = write!(
                out,
                "|||{} {}^^{town}^^{district} {}{}{}^GBR^H||07700 900{}^PRN^CP",
                self.between(1, 180),
                self.pick(STREETS),
                self.below(10),
                char::from(b'A' + self.below(26) as u8),
                char::from(b'A' + self.below(26) as u8),
                self.digits(3)
            );
            if self.chance(3) {
                match &patient.email {
                    Some(email) => {
                        let _ = write!(out, "~{email}^NET^Internet");
                    }
                    None => {
                        let _ = write!(
                            out,
                            "~{}.{}@example.org^NET^Internet",
                            patient.given.to_lowercase(),
                            self.digits(3)
                        );
                    }
                }
            }
        }
        out.push('\r');
    }

    fn clinician(&mut self) -> String {
        format!("C{}^{}^{}^^^Dr", self.digits(7), self.pick(FAMILY_NAMES), self.pick(GIVEN_NAMES))
    }

    /// The next message of the mix: ADT 40 %, ORU 30 %, MDM 15 %, SIU 15 %.
    pub(crate) fn message(&mut self) -> (Kind, String) {
        let kind = match self.below(20) {
            0 | 1 => Kind::AdtA28,
            2 | 3 => Kind::AdtA31,
            4 | 5 => Kind::AdtA01,
            6 | 7 => Kind::AdtA08,
            8..=13 => Kind::OruR01,
            14..=16 => Kind::MdmT02,
            17 | 18 => Kind::SiuS12,
            _ => Kind::SiuS15,
        };
        let mut out = String::with_capacity(1024);
        match kind {
            Kind::AdtA28 | Kind::AdtA31 | Kind::AdtA01 | Kind::AdtA08 => self.adt(kind, &mut out),
            Kind::OruR01 => self.oru(&mut out),
            Kind::MdmT02 => self.mdm(&mut out),
            Kind::SiuS12 | Kind::SiuS15 => self.siu(kind, &mut out),
        }
        (kind, out)
    }

    fn adt(&mut self, kind: Kind, out: &mut String) {
        let patient = self.patient();
        self.adt_about(kind, &patient, None, out);
    }

    /// An ADT message about `patient`. One in three carries a ZTM segment: in the parse
    /// corpus, two teams to add and a third to discharge from, at random; in a feed
    /// (`teams`: the teams the patient is in), changes that Kith can apply.
    fn adt_about(&mut self, kind: Kind, patient: &Patient, teams: Option<&mut Vec<&'static str>>, out: &mut String) {
        let (event, structure) = match kind {
            Kind::AdtA28 => ("A28", "ADT_A05"),
            Kind::AdtA31 => ("A31", "ADT_A05"),
            Kind::AdtA01 => ("A01", "ADT_A01"),
            _ => ("A08", "ADT_A01"),
        };
        let timestamp = self.msh(out, "PAS", patient.facility, &format!("ADT^{event}^{structure}"), "ADT");
        let _ = write!(
            out,
            "EVN|{event}|{timestamp}|||U{}^{}^{}\r",
            self.digits(5),
            self.pick(FAMILY_NAMES),
            self.pick(GIVEN_NAMES)
        );
        self.pid(out, patient, true);
        if matches!(kind, Kind::AdtA01 | Kind::AdtA08) {
            let (specialty, _) = self.pick(SPECIALTIES);
            let _ = write!(
                out,
                "PV1|1|I|{}^{}^{}^{}||||{}|||{specialty}||||{}|||||V{}^^^{}-VN^VN\r",
                self.pick(WARDS),
                self.between(1, 30),
                self.between(1, 8),
                patient.facility,
                self.clinician(),
                self.pick(&["19", "11", "51"]),
                self.digits(8),
                patient.facility
            );
        } else {
            out.push_str("PV1|1|N\r");
        }
        if self.chance(3) {
            match teams {
                Some(teams) => self.feed_ztm(teams, out),
                None => {
                    // ZTM-1 the teams to add, ZTM-2 a team to discharge from: three different teams.
                    let first = self.below(TEAMS.len());
                    let team = |offset: usize| TEAMS[(first + offset) % TEAMS.len()];
                    let _ = write!(out, "ZTM|{}~{}|{}\r", team(0), team(1), team(2));
                }
            }
        }
    }

    /// A feed's ZTM: two teams to add (ZTM-1) and, half the time when the patient is in
    /// another team, that team to discharge from (ZTM-2); `teams` follows.
    fn feed_ztm(&mut self, teams: &mut Vec<&'static str>, out: &mut String) {
        let first = self.below(FEED_TEAMS.len());
        let add = [FEED_TEAMS[first], FEED_TEAMS[(first + 1) % FEED_TEAMS.len()]];
        let others: Vec<&'static str> = teams.iter().copied().filter(|team| !add.contains(team)).collect();
        let _ = write!(out, "ZTM|{}~{}", add[0], add[1]);
        if !others.is_empty() && self.chance(2) {
            let leaving = self.pick(&others);
            let _ = write!(out, "|{leaving}");
            teams.retain(|team| *team != leaving);
        }
        out.push('\r');
        for team in add {
            if !teams.contains(&team) {
                teams.push(team);
            }
        }
    }

    fn oru(&mut self, out: &mut String) {
        let patient = self.patient();
        self.oru_about(&patient, out);
    }

    fn oru_about(&mut self, patient: &Patient, out: &mut String) {
        let panel = &PANELS[self.below(PANELS.len())];
        let sent = self.msh(out, "WINPATH", patient.facility, "ORU^R01^ORU_R01", "LAB");
        self.pid(out, patient, false);
        let _ = write!(out, "PV1|1|O|{}^^^{}||||{}\r", self.pick(CLINICS), patient.facility, self.clinician());
        let collected = self.timestamp();
        let _ = write!(
            out,
            "OBR|1|{}^ICE|{}^WINPATH|{}^{}^WINPATH|||{collected}||||||||{}|{}||||||{sent}||{}|F\r",
            self.digits(8),
            self.digits(9),
            panel.code,
            panel.name,
            panel.specimen,
            self.clinician(),
            panel.department
        );
        let count = self.between(3, 6).min(panel.tests.len());
        // OBX-14 (the observation time) in half of the results; OBR-7 gives it otherwise.
        let observed = if self.chance(2) { format!("|||{collected}") } else { String::new() };
        let first = self.below(panel.tests.len());
        for index in 0..count {
            let test = &panel.tests[(first + index) % panel.tests.len()];
            match test {
                Test::Numeric { code, name, units, low, high, decimals } => {
                    // Mostly within the range, some below or above it.
                    let spread = high - low;
                    let value = low - 0.25 * spread + 1.5 * spread * (self.below(10_000) as f64 / 10_000.0);
                    let value = value.max(0.0);
                    let flag = if value < *low {
                        "L"
                    } else if value > *high {
                        "H"
                    } else {
                        "N"
                    };
                    let _ = write!(
                        out,
                        "OBX|{}|NM|{code}^{name}^WINPATH||{value:.decimals$}|{units}|{low:.decimals$}-{high:.decimals$}|{flag}|||F{observed}\r",
                        index + 1
                    );
                }
                Test::Words { code, name, values } => {
                    let value = self.pick(values);
                    let _ = write!(out, "OBX|{}|ST|{code}^{name}^WINPATH||{value}||||||F{observed}\r", index + 1);
                }
            }
        }
        let _ = write!(out, "NTE|1|L|{}\r", self.pick(LAB_NOTES));
    }

    fn mdm(&mut self, out: &mut String) {
        let patient = self.patient();
        self.mdm_about(&patient, out);
    }

    fn mdm_about(&mut self, patient: &Patient, out: &mut String) {
        let timestamp = self.msh(out, "EPR", patient.facility, "MDM^T02^MDM_T02", "DOC");
        let _ = write!(out, "EVN|T02|{timestamp}\r");
        self.pid(out, patient, false);
        let (code, name) = self.pick(DOCUMENT_TYPES);
        let _ = write!(
            out,
            "TXA|1|{code}^{name}|TX|{timestamp}|{}|{timestamp}||||||DOC-{}|||||AU||AV\r",
            self.clinician(),
            self.digits(7)
        );
        for index in 0..self.between(2, 3) {
            let _ = write!(out, "OBX|{}|TX|{code}^{name}||{}||||||F\r", index + 1, self.pick(DOCUMENT_LINES));
        }
    }

    fn siu(&mut self, kind: Kind, out: &mut String) {
        let patient = self.patient();
        self.siu_about(kind, &patient, None, out);
    }

    /// An SIU message about `patient`: for `appointment` (placer and filler numbers) or a new
    /// one; returns the appointment's numbers.
    fn siu_about(
        &mut self,
        kind: Kind,
        patient: &Patient,
        appointment: Option<(String, String)>,
        out: &mut String,
    ) -> (String, String) {
        let event = if kind == Kind::SiuS12 { "S12" } else { "S15" };
        self.msh(out, "PAS", patient.facility, &format!("SIU^{event}^SIU_S12"), "APT");
        let start = format!(
            "2026{:02}{:02}{:02}{:02}00",
            self.between(1, 12),
            self.between(1, 28),
            self.between(8, 16),
            15 * self.below(4)
        );
        let duration = 15 * self.between(1, 4);
        let (reason_code, reason) = self.pick(APPOINTMENT_REASONS);
        let (event_reason, status) = if kind == Kind::SiuS12 {
            ("", "Booked")
        } else {
            (self.pick(&["PATCAN^Cancelled by patient", "HOSCAN^Cancelled by hospital"]), "Cancelled")
        };
        let (placer, filler) = match appointment {
            Some(numbers) => numbers,
            None => {
                let placer = self.digits(8);
                (placer, self.digits(8))
            }
        };
        let _ = write!(
            out,
            "SCH|A{placer}^PAS|A{filler}^PAS||||{event_reason}|{reason_code}^{reason}|ROUTINE|{duration}|MIN|^^{duration}^{start}||||||||||||||{status}\r"
        );
        self.pid(out, patient, false);
        let (service_code, service) = self.pick(SERVICES);
        let _ = write!(out, "AIS|1|A|{service_code}^{service}^PAS|{start}|0|MIN|{duration}|MIN\r");
        let (location_code, location) = self.pick(LOCATIONS);
        let _ = write!(out, "AIL|1|A|{location_code}^^^{}^^^^{location}\r", patient.facility);
        (placer, filler)
    }
}

// ---------------------------------------------------------------------------------------
// hl7-corpus --feed
// ---------------------------------------------------------------------------------------

/// The sending facility (MSH-4) of every feed message; hospital numbers are of the
/// assigning authority `RXH-MRN`. bench/hl7/mllp registers both with Kith.
pub(crate) const FEED_FACILITY: &str = "RXH";
/// The teams a feed's ZTM segments name (bench/hl7/mllp creates them).
pub(crate) const FEED_TEAMS: &[&str] = &["mh", "gum", "cardiology", "diabetes", "maternity"];
const FEED_SEED: u64 = 0x4645_4544_4B49_5448;

/// A feed that a receiver can file: patients one after another, each with unique
/// identifiers, their first message creating the record.
pub(crate) struct Feed {
    generator: Generator,
    /// The last patient's number: NHS number 999 + 6 digits of it + check digit, hospital
    /// number K + 7 digits of it.
    serial: u32,
}

impl Feed {
    pub(crate) fn new() -> Self {
        Feed { generator: Generator { rng: SplitMix(FEED_SEED), sequence: 0 }, serial: 0 }
    }

    /// A new patient, with an NHS number, hospital number and email address of their own.
    fn patient(&mut self) -> Result<Patient, String> {
        let nhs = loop {
            self.serial += 1;
            if self.serial > 999_999 {
                return Err("a feed has at most 909,090 patients (NHS numbers 999 000 000x to 999 999 999x)".into());
            }
            let mut digits: Vec<u32> = (0..6).rev().map(|place| self.serial / 10u32.pow(place) % 10).collect();
            digits.splice(0..0, [9, 9, 9]);
            if let Some(check) = NhsNumber::check_digit(&digits) {
                digits.push(check);
                break digits.iter().map(|d| char::from_digit(*d, 10).unwrap_or('0')).collect::<String>();
            }
        };
        let generator = &mut self.generator;
        let given = generator.pick(GIVEN_NAMES);
        Ok(Patient {
            nhs,
            mrn: format!("K{:07}", self.serial),
            facility: FEED_FACILITY,
            family: generator.pick(FAMILY_NAMES),
            given,
            birth_date: format!(
                "{}{:02}{:02}",
                generator.between(1930, 2024),
                generator.between(1, 12),
                generator.between(1, 28)
            ),
            sex: generator.pick(&["F", "M", "F", "M", "U"]),
            email: Some(format!("{}.{}@example.org", given.to_lowercase(), self.serial)),
        })
    }

    /// One patient's messages: ADT^A28 or A01 creating the record, then 2 to 6 about them —
    /// ADT^A31 or A08 updates (4 in 16), ORU^R01 results (6 in 16), MDM^T02 documents (3 in
    /// 16), SIU^S12 bookings (2 in 16) and S15 cancellations (1 in 16, of an earlier booking
    /// when there is one) — which makes the mix of the parse corpus on average: ADT 40 %
    /// (A28, A01, A31, A08 10 % each), ORU 30 %, MDM 15 %, SIU 15 %.
    pub(crate) fn patient_messages(&mut self) -> Result<Vec<(Kind, String)>, String> {
        let patient = self.patient()?;
        let generator = &mut self.generator;
        let mut kinds = vec![if generator.chance(2) { Kind::AdtA28 } else { Kind::AdtA01 }];
        for _ in 0..generator.between(2, 6) {
            kinds.push(match generator.below(16) {
                0 | 1 => Kind::AdtA31,
                2 | 3 => Kind::AdtA08,
                4..=9 => Kind::OruR01,
                10..=12 => Kind::MdmT02,
                13 | 14 => Kind::SiuS12,
                _ => Kind::SiuS15,
            });
        }
        let mut teams = Vec::new();
        let mut booked: Vec<(String, String)> = Vec::new();
        let mut messages = Vec::with_capacity(kinds.len());
        for kind in kinds {
            let mut out = String::with_capacity(1024);
            match kind {
                Kind::AdtA28 | Kind::AdtA31 | Kind::AdtA01 | Kind::AdtA08 => {
                    generator.adt_about(kind, &patient, Some(&mut teams), &mut out);
                }
                Kind::OruR01 => generator.oru_about(&patient, &mut out),
                Kind::MdmT02 => generator.mdm_about(&patient, &mut out),
                Kind::SiuS12 => booked.push(generator.siu_about(kind, &patient, None, &mut out)),
                Kind::SiuS15 => {
                    let appointment = (!booked.is_empty()).then(|| booked.remove(generator.below(booked.len())));
                    generator.siu_about(kind, &patient, appointment, &mut out);
                }
            }
            messages.push((kind, out));
        }
        Ok(messages)
    }
}

// ---------------------------------------------------------------------------------------
// hl7-parse
// ---------------------------------------------------------------------------------------

/// The messages of a corpus file: split on CR LF, each message keeping its final CR. The
/// file must end with CR LF; an empty message is refused.
pub(crate) fn split_corpus(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut messages = Vec::new();
    let mut start = 0;
    let mut index = 0;
    while index + 1 < bytes.len() {
        if bytes[index] == b'\r' && bytes[index + 1] == b'\n' {
            if index == start {
                return Err(format!("an empty message at byte {start}"));
            }
            messages.push(&bytes[start..=index]);
            start = index + 2;
            index = start;
        } else {
            index += 1;
        }
    }
    if start != bytes.len() {
        return Err(format!("{} bytes after the last CR LF: the file must end with CR LF", bytes.len() - start));
    }
    Ok(messages)
}

struct Run {
    messages: u64,
    elapsed: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

/// Parses the whole corpus again and again until `minimum` has passed.
fn timed_run(messages: &[&[u8]], minimum: Duration) -> Run {
    let mut parsed = 0u64;
    let start = Instant::now();
    loop {
        for message in messages {
            black_box(parse(black_box(message)));
        }
        parsed += messages.len() as u64;
        if start.elapsed() >= minimum {
            break;
        }
    }
    Run { messages: parsed, elapsed: start.elapsed() }
}

pub fn parse_throughput(args: &[String]) -> Result<(), Failure> {
    let mut corpus = None;
    let mut seconds = 5.0;
    let mut runs = 3;
    for (flag, value) in flag_values(args, PARSE_USAGE)? {
        match flag.as_str() {
            "--corpus" => corpus = Some(PathBuf::from(value)),
            "--seconds" => {
                seconds = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| Failure::Usage(format!("--seconds needs a positive number, not {value:?}")))?;
            }
            "--runs" => runs = positive_count(&flag, &value)?,
            other => return Err(Failure::Usage(format!("unknown option {other:?}"))),
        }
    }
    let corpus = corpus.ok_or_else(|| Failure::Usage("--corpus FILE is required".to_owned()))?;

    println!("kith-bench hl7-parse: kith_hl7::parse (Rust)");
    if cfg!(debug_assertions) {
        println!("WARNING: this is a debug build; figures are meaningless (use bench/hl7/run)");
    }
    let file = try_to!(format!("read {}", corpus.display()), std::fs::read(&corpus));
    let messages = split_corpus(&file).map_err(|error| Failure::Run(format!("{}: {error}", corpus.display())))?;
    if messages.is_empty() {
        return Err(Failure::Run(format!("{}: no messages", corpus.display())));
    }
    let bytes: usize = messages.iter().map(|message| message.len()).sum();

    // Every message must parse with no error problem, or the figures mean nothing.
    let (mut segments, mut warnings, mut failed) = (0usize, 0usize, Vec::new());
    for (index, message) in messages.iter().enumerate() {
        let parsed = parse(message);
        warnings += parsed.problems.iter().filter(|problem| problem.severity == Severity::Warning).count();
        match (&parsed.message, parsed.first_error()) {
            (Some(message), None) => segments += message.segments.len(),
            (_, error) => failed.push(format!(
                "message {}: {}",
                index + 1,
                error.map_or_else(|| "no message".to_owned(), ToString::to_string)
            )),
        }
    }
    if !failed.is_empty() {
        return Err(Failure::Run(format!(
            "{} of {} messages do not parse without error; the first: {}",
            failed.len(),
            messages.len(),
            failed[..failed.len().min(5)].join("; ")
        )));
    }
    println!(
        "corpus {}: {} messages, {} segments, {} bytes (mean {:.1}); every message parses with no error ({} warnings)",
        corpus.display(),
        group(messages.len() as u64),
        group(segments as u64),
        group(bytes as u64),
        bytes as f64 / messages.len() as f64,
        warnings
    );
    println!(
        "one thread, std::hint::black_box on each message and each result, {runs} runs of at least {seconds} s after {} s of warm-up",
        WARM_UP.as_secs()
    );

    black_box(timed_run(&messages, WARM_UP).messages);
    let minimum = Duration::from_secs_f64(seconds);
    let mut results: Vec<Run> = Vec::with_capacity(runs);
    for number in 1..=runs {
        let run = timed_run(&messages, minimum);
        println!(
            "  run {number}: {} messages/s, {:.2} MB/s ({} messages in {:.2} s)",
            group(run.per_second().round() as u64),
            run.per_second() * bytes as f64 / messages.len() as f64 / 1e6,
            group(run.messages),
            run.elapsed.as_secs_f64()
        );
        results.push(run);
    }
    let rates: Vec<String> = results.iter().map(|run| format!("{:.0}", run.per_second())).collect();
    results.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    let median = results[results.len() / 2].per_second();
    let mb_per_second = median * bytes as f64 / messages.len() as f64 / 1e6;
    println!("  median: {} messages/s, {mb_per_second:.2} MB/s", group(median.round() as u64));
    println!(
        "RESULT name=kith messages_per_second={median:.0} mb_per_second={mb_per_second:.2} messages={} segments={segments} bytes={bytes} runs={}",
        messages.len(),
        rates.join(",")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus_of(count: usize) -> Vec<(Kind, String)> {
        let mut generator = Generator::new();
        (0..count).map(|_| generator.message()).collect()
    }

    #[test]
    fn every_generated_message_parses_without_error() {
        let corpus = corpus_of(4_000);
        for (index, (kind, text)) in corpus.iter().enumerate() {
            let parsed = parse(text.as_bytes());
            assert_eq!(parsed.first_error(), None, "message {index} ({})", kind.name());
            assert!(parsed.problems.is_empty(), "message {index}: {:?}", parsed.problems);
            let message = parsed.message.expect("a message");
            let (message_type, event) = message.message_type();
            assert_eq!(format!("{message_type}^{event}"), kind.name());
            assert_eq!(message.segments.len(), text.matches('\r').count());
            assert!(!text.contains('\n') && text.ends_with('\r'), "message {index} is not CR-separated");
            let pid = message.segment("PID").expect("a PID segment");
            let identifiers = pid.repetitions(3);
            assert_eq!((identifiers[0].component(4), identifiers[0].component(5)), ("NHS", "NH"));
            let nhs = identifiers[0].component(1);
            assert!(nhs.starts_with("999") && NhsNumber::parse(nhs).is_ok(), "{nhs}");
            assert_eq!(identifiers[1].component(5), "MR");
        }
    }

    #[test]
    fn the_corpus_is_deterministic_mixed_and_about_500_bytes() {
        let corpus = corpus_of(4_000);
        assert_eq!(corpus, corpus_of(4_000));
        let mean = corpus.iter().map(|(_, text)| text.len()).sum::<usize>() as f64 / corpus.len() as f64;
        assert!((450.0..=550.0).contains(&mean), "mean {mean}");
        for kind in [
            Kind::AdtA28,
            Kind::AdtA31,
            Kind::AdtA01,
            Kind::AdtA08,
            Kind::OruR01,
            Kind::MdmT02,
            Kind::SiuS12,
            Kind::SiuS15,
        ] {
            assert!(corpus.iter().any(|(k, _)| *k == kind), "no {}", kind.name());
        }
        for sequence in [r"\F\", r"\S\", r"\T\", r"\E\", r"\.br\"] {
            assert!(corpus.iter().any(|(_, text)| text.contains(sequence)), "no {sequence}");
        }
        assert!(corpus.iter().any(|(_, text)| text.contains("\rZTM|")));
        assert!(corpus.iter().any(|(_, text)| !text.is_ascii()));
        // ORU results carry 3 to 6 OBX segments.
        for (_, text) in corpus.iter().filter(|(kind, _)| *kind == Kind::OruR01) {
            assert!((3..=6).contains(&text.matches("\rOBX|").count()));
        }
    }

    #[test]
    fn kith_reads_every_generated_message_as_its_type() {
        use kith_hl7::adt::read_adt;
        use kith_hl7::clinical::{read_mdm, read_oru, read_siu};
        let local = |authority: &str| authority.ends_with("-MRN");
        for (index, (kind, text)) in corpus_of(2_000).iter().enumerate() {
            let message = parse(text.as_bytes()).message.expect("a message");
            let (code, event) = message.message_type();
            assert!(kith_hl7::events::action(code, event).is_some(), "{code}^{event}");
            let outcome = match kind {
                Kind::AdtA28 | Kind::AdtA31 | Kind::AdtA01 | Kind::AdtA08 => read_adt(&message, &local).map(|_| ()),
                Kind::OruR01 => read_oru(&message, &local).map(|read| assert_eq!(read.reports.len(), 1)),
                Kind::MdmT02 => {
                    read_mdm(&message, &local).map(|document| assert!(document.source_key.starts_with("MDM:DOC-")))
                }
                Kind::SiuS12 | Kind::SiuS15 => {
                    read_siu(&message, &local).map(|appointment| assert!(appointment.source_key.starts_with("SIU:A")))
                }
            };
            if let Err(rejection) = outcome {
                panic!("message {index} ({}) is refused: {rejection:?}", kind.name());
            }
        }
    }

    fn feed_of(patients: usize) -> Vec<Vec<(Kind, String)>> {
        let mut feed = Feed::new();
        (0..patients).map(|_| feed.patient_messages().expect("a patient")).collect()
    }

    #[test]
    fn a_feed_is_deterministic_has_the_mix_and_unique_identifiers() {
        let feed = feed_of(1_000);
        assert_eq!(feed, feed_of(1_000));
        let messages: Vec<&(Kind, String)> = feed.iter().flatten().collect();
        let mean = messages.iter().map(|(_, text)| text.len()).sum::<usize>() as f64 / messages.len() as f64;
        assert!((450.0..=550.0).contains(&mean), "mean {mean}");
        let share = |kinds: &[Kind]| {
            100.0 * messages.iter().filter(|(kind, _)| kinds.contains(kind)).count() as f64 / messages.len() as f64
        };
        let adt = share(&[Kind::AdtA28, Kind::AdtA31, Kind::AdtA01, Kind::AdtA08]);
        let siu = share(&[Kind::SiuS12, Kind::SiuS15]);
        for (name, got, want) in [
            ("ADT", adt, 40.0),
            ("ORU", share(&[Kind::OruR01]), 30.0),
            ("MDM", share(&[Kind::MdmT02]), 15.0),
            ("SIU", siu, 15.0),
        ] {
            assert!((got - want).abs() < 3.0, "{name}: {got:.1} %");
        }
        let mut nhs_numbers = std::collections::HashSet::new();
        let mut control_ids = std::collections::HashSet::new();
        for patient in &feed {
            assert!(matches!(patient[0].0, Kind::AdtA28 | Kind::AdtA01), "{}", patient[0].1);
            assert!((3..=7).contains(&patient.len()));
            let mut theirs = std::collections::HashSet::new();
            for (_, text) in patient {
                let message = parse(text.as_bytes()).message.expect("a message");
                assert_eq!(message.header_value(4), FEED_FACILITY);
                assert!(control_ids.insert(message.control_id().to_owned()), "{}", message.control_id());
                let identifiers = message.segment("PID").expect("a PID segment").repetitions(3);
                assert_eq!(identifiers[1].component(4), format!("{FEED_FACILITY}-MRN"));
                theirs.insert((identifiers[0].component(1).to_owned(), identifiers[1].component(1).to_owned()));
            }
            assert_eq!(theirs.len(), 1, "one patient's messages name one patient");
            let (nhs, _) = theirs.into_iter().next().expect("a patient");
            assert!(NhsNumber::parse(&nhs).is_ok(), "{nhs}");
            assert!(nhs_numbers.insert(nhs));
        }
        assert!(messages.iter().any(|(_, text)| text.contains("\rZTM|")));
    }

    /// Kith accepts (AA) every message of a feed, sent as bench/hl7/mllp sends it, into an
    /// organisation set up as bench/hl7/mllp sets it up.
    #[test]
    fn kith_accepts_every_message_of_a_feed() {
        use std::sync::Arc;

        use kith_app::{App, Hl7Sender, NewOrganisation, Operator, SystemClock};
        use kith_core::text::{Name, OrganisationCode, TeamAlias};
        use kith_core::{LabelSet, PrivacyLabel};
        use kith_hl7::ack::AckCode;

        let database = kith_test_support::TestDatabase::sqlite();
        let app = App::new(database.store(), Arc::new(SystemClock));
        let operator = Operator { name: "bench".into() };
        let code = OrganisationCode::parse(FEED_FACILITY).unwrap();
        let name = |text: &str| Name::parse("name", text).unwrap();
        let organisation = NewOrganisation { code: code.clone(), name: name("Riverside"), break_glass_duration: None };
        app.create_organisation(&operator, &organisation).unwrap();
        app.set_hl7_create_on_any_adt(&operator, &code, true).unwrap();
        app.add_assigning_authority(&operator, &code, &format!("{FEED_FACILITY}-MRN")).unwrap();
        for team in FEED_TEAMS {
            let labels = LabelSet::from_labels([PrivacyLabel::General]);
            app.create_team(&operator, &code, &name(team), &TeamAlias::parse(team).unwrap(), labels).unwrap();
        }
        app.create_integration(&operator, &code, &name("feed"), FEED_FACILITY, None).unwrap();

        let feed = feed_of(300);
        let messages: Vec<&(Kind, String)> = feed.iter().flatten().collect();
        for chunk in messages.chunks(64) {
            let batch: Vec<(Hl7Sender<'_>, &[u8])> =
                chunk.iter().map(|(_, text)| (Hl7Sender::UnauthenticatedMllp, text.as_bytes())).collect();
            for ((kind, text), ingested) in chunk.iter().zip(app.ingest_hl7_batch(&batch)) {
                assert_eq!(ingested.code, AckCode::Accept, "{}: {}\n{text}", kind.name(), ingested.ack);
                assert!(!ingested.duplicate);
            }
        }
    }

    #[test]
    fn escape_sequences_are_read() {
        let parsed = parse(
            b"MSH|^~\\&|LAB|RXH|KITH|KITH|20260101||ORU^R01|1|P|2.4\rNTE|1|L|a\\F\\b\\S\\c\\T\\d\\E\\e\\.br\\f\r",
        );
        assert_eq!(parsed.message.unwrap().segment("NTE").unwrap().value(3), "a|b^c&d\\e\nf");
    }

    #[test]
    fn splitting_a_corpus_file() {
        assert_eq!(split_corpus(b"MSH|a\rPID|1\r\nMSH|b\r\n").unwrap(), [&b"MSH|a\rPID|1\r"[..], b"MSH|b\r"]);
        assert_eq!(split_corpus(b"").unwrap(), Vec::<&[u8]>::new());
        assert!(split_corpus(b"MSH|a\r\nMSH|b\r").is_err());
        assert!(split_corpus(b"MSH|a\r\n\r\n").is_err());
    }
}
