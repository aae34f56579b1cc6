//! Reading results (ORU^R01), documents (MDM^T02) and appointments (SIU^S12/S13/S15), and
//! choosing the privacy label of what they carry from an organisation's label rules.

use kith_core::model::{EntryStatus, Observation};
use kith_core::{PrivacyLabel, Timestamp};

use crate::adt::{
    DATA_TYPE_ERROR, PatientIdentity, REQUIRED_FIELD_MISSING, Rejection, SEGMENT_SEQUENCE_ERROR, hl7_date,
    read_patient_identity,
};
use crate::message::{Message, Segment};
use crate::parse::Location;

/// The fields a label rule may look at, most specific first: when rules give different
/// sensitive labels, the most specific field wins.
pub const LABEL_RULE_FIELDS: [&str; 6] = ["OBX-3", "OBR-4", "TXA-2", "PV1-3", "PV1-10", "MSH-3"];

/// The label for data with these (field, value) pairs: a sensitive label from any matching
/// rule wins over general (privacy first); among sensitive ones, the most specific field's.
/// Without a matching rule, general.
pub fn choose_label(rules: &[(String, String, PrivacyLabel)], values: &[(&str, &str)]) -> PrivacyLabel {
    let mut best: Option<(usize, PrivacyLabel)> = None;
    for (field, value) in values {
        if value.is_empty() {
            continue;
        }
        let rank = LABEL_RULE_FIELDS.iter().position(|known| known == field).unwrap_or(LABEL_RULE_FIELDS.len());
        for (rule_field, rule_value, label) in rules {
            let matches = rule_field == field && rule_value.eq_ignore_ascii_case(value);
            if matches && *label != PrivacyLabel::General && best.is_none_or(|(best_rank, _)| rank < best_rank) {
                best = Some((rank, *label));
            }
        }
    }
    best.map_or(PrivacyLabel::General, |(_, label)| label)
}

/// An HL7 TS (`YYYYMMDD[HHMM[SS[.S…]]][+/-ZZZZ]`) as an instant. Without an offset the time
/// is taken as UTC.
pub fn hl7_instant(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    let date = hl7_date(text)?;
    let (clock, offset) = match text[8..].find(['+', '-']) {
        Some(at) => (&text[8..8 + at], Some(&text[8 + at..])),
        None => (&text[8..], None),
    };
    let clock = clock.split('.').next().unwrap_or_default();
    if !clock.bytes().all(|b| b.is_ascii_digit()) || ![0, 2, 4, 6].contains(&clock.len()) {
        return None;
    }
    let part = |range: std::ops::Range<usize>, max: i64| -> Option<i64> {
        clock.get(range).map_or(Some(0), |digits| digits.parse::<i64>().ok().filter(|v| *v <= max))
    };
    let seconds = part(0..2, 23)? * 3600 + part(2..4, 59)? * 60 + part(4..6, 60)?;
    let offset_seconds = match offset {
        None => 0,
        Some(offset) => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let digits = &offset[1..];
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            sign * (digits[..2].parse::<i64>().ok()? * 3600 + digits[2..].parse::<i64>().ok()? * 60)
        }
    };
    Some(Timestamp::from_micros((date.start().as_micros() / 1_000_000 + seconds - offset_seconds) * 1_000_000))
}

/// What every clinical message says about where it comes from, for label rules.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Provenance {
    pub sending_application: String,
    pub point_of_care: String,
    pub hospital_service: String,
}

fn provenance(message: &Message) -> Provenance {
    let pv1 = message.segment("PV1");
    Provenance {
        sending_application: message.header().map_or("", |h| h.component(3, 1)).to_owned(),
        point_of_care: pv1.map_or("", |pv1| pv1.component(3, 1)).to_owned(),
        hospital_service: pv1.map_or("", |pv1| pv1.value(10)).to_owned(),
    }
}

impl Provenance {
    fn values(&self) -> [(&'static str, &str); 3] {
        [("PV1-3", &self.point_of_care), ("PV1-10", &self.hospital_service), ("MSH-3", &self.sending_application)]
    }
}

/// One OBR with its OBX observations and NTE comments.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ResultReport {
    /// `ORU:` and the filler order number (OBR-3), or the placer's (OBR-2).
    pub source_key: String,
    pub title: String,
    pub service_code: String,
    pub effective_at: Timestamp,
    pub status: EntryStatus,
    pub observations: Vec<Observation>,
    pub notes: Vec<String>,
    pub location: Location,
}

impl ResultReport {
    /// The label of this report under `rules`.
    pub fn label(&self, rules: &[(String, String, PrivacyLabel)], provenance: &Provenance) -> PrivacyLabel {
        let mut values: Vec<(&str, &str)> = self.observations.iter().map(|o| ("OBX-3", o.code.as_str())).collect();
        values.push(("OBR-4", &self.service_code));
        values.extend(provenance.values());
        choose_label(rules, &values)
    }

    /// The report as text: one line per observation, then the comments.
    pub fn body(&self) -> String {
        let mut lines: Vec<String> = self
            .observations
            .iter()
            .map(|o| {
                let mut line = format!("{}: {}", if o.name.is_empty() { &o.code } else { &o.name }, o.value);
                if !o.units.is_empty() {
                    line.push(' ');
                    line.push_str(&o.units);
                }
                if !o.reference_range.is_empty() {
                    line.push_str(&format!(" (range {})", o.reference_range));
                }
                if !o.flags.is_empty() {
                    line.push_str(&format!(" [{}]", o.flags));
                }
                line
            })
            .collect();
        lines.extend(self.notes.iter().cloned());
        lines.join("\n")
    }
}

/// An ORU^R01 message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ResultMessage {
    pub identity: PatientIdentity,
    pub pid_segment: usize,
    pub provenance: Provenance,
    pub reports: Vec<ResultReport>,
}

fn coded_text(segment: &Segment, field: usize) -> (String, String, String) {
    (
        segment.component(field, 1).trim().to_owned(),
        segment.component(field, 2).trim().to_owned(),
        segment.component(field, 3).trim().to_owned(),
    )
}

fn result_status(code: &str) -> EntryStatus {
    match code.trim() {
        "C" => EntryStatus::Corrected,
        "X" => EntryStatus::Cancelled,
        "P" | "R" | "I" | "S" | "A" => EntryStatus::Preliminary,
        _ => EntryStatus::Final,
    }
}

/// Reads an ORU^R01: one report per OBR, with the OBX and NTE segments that follow it.
pub fn read_oru(message: &Message, is_local_authority: &dyn Fn(&str) -> bool) -> Result<ResultMessage, Rejection> {
    let (pid_segment, identity, _) = read_patient_identity(message, is_local_authority)?;
    let mut reports: Vec<ResultReport> = Vec::new();
    for (index, segment) in message.segments.iter().enumerate() {
        let position = index + 1;
        match segment.id.as_str() {
            "OBR" => {
                let at = |field| Location::field(position, "OBR", field);
                let order = [segment.component(3, 1), segment.component(2, 1)]
                    .into_iter()
                    .map(str::trim)
                    .find(|order| !order.is_empty())
                    .ok_or_else(|| {
                        Rejection::new(
                            REQUIRED_FIELD_MISSING,
                            Some(at(3)),
                            format!(
                                "OBR[{}]: a result needs a filler (OBR-3) or placer (OBR-2) order number",
                                reports.len() + 1
                            ),
                        )
                    })?;
                let (code, text, _) = coded_text(segment, 4);
                let effective = segment.value(7).trim();
                let effective_at = if effective.is_empty() {
                    None
                } else {
                    Some(hl7_instant(effective).ok_or_else(|| {
                        Rejection::new(
                            DATA_TYPE_ERROR,
                            Some(at(7)),
                            format!("OBR-7: {effective:?} is not a date and time"),
                        )
                    })?)
                };
                reports.push(ResultReport {
                    source_key: format!("ORU:{order}"),
                    title: if text.is_empty() {
                        if code.is_empty() { "Result".to_owned() } else { code.clone() }
                    } else {
                        text
                    },
                    service_code: code,
                    // Filled from an OBX below when OBR-7 is empty; checked at the end.
                    effective_at: effective_at.unwrap_or(Timestamp::from_micros(i64::MIN)),
                    status: result_status(segment.value(25)),
                    observations: Vec::new(),
                    notes: Vec::new(),
                    location: at(4),
                });
            }
            "OBX" => {
                let Some(report) = reports.last_mut() else {
                    return Err(Rejection::new(
                        SEGMENT_SEQUENCE_ERROR,
                        Some(Location::segment(position, "OBX")),
                        "OBX before any OBR",
                    ));
                };
                let (code, name, system) = coded_text(segment, 3);
                let value = segment
                    .repetitions(5)
                    .iter()
                    .map(|repetition| {
                        repetition
                            .components
                            .iter()
                            .map(|c| c.subcomponents.join("&"))
                            .filter(|c| !c.is_empty())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let observed_text = segment.value(14).trim();
                let observed_at = if observed_text.is_empty() {
                    None
                } else {
                    Some(hl7_instant(observed_text).ok_or_else(|| {
                        Rejection::new(
                            DATA_TYPE_ERROR,
                            Some(Location::field(position, "OBX", 14)),
                            format!("OBX-14: {observed_text:?} is not a date and time"),
                        )
                    })?)
                };
                if report.effective_at == Timestamp::from_micros(i64::MIN)
                    && let Some(observed_at) = observed_at
                {
                    report.effective_at = observed_at;
                }
                report.observations.push(Observation {
                    code,
                    code_system: system,
                    name,
                    value_type: segment.value(2).trim().to_owned(),
                    value,
                    units: segment.component(6, 1).trim().to_owned(),
                    reference_range: segment.value(7).trim().to_owned(),
                    flags: segment
                        .repetitions(8)
                        .iter()
                        .map(|r| r.component(1))
                        .filter(|f| !f.is_empty())
                        .collect::<Vec<_>>()
                        .join("~"),
                    status: segment.value(11).trim().to_owned(),
                    observed_at,
                });
            }
            "NTE" => {
                if let Some(report) = reports.last_mut() {
                    let comment = segment.repetitions(3).iter().map(|r| r.component(1)).collect::<Vec<_>>().join("\n");
                    if !comment.trim().is_empty() {
                        report.notes.push(comment);
                    }
                }
            }
            _ => {}
        }
    }
    if reports.is_empty() {
        return Err(Rejection::new(SEGMENT_SEQUENCE_ERROR, None, "ORU^R01 without an OBR segment"));
    }
    for (number, report) in reports.iter().enumerate() {
        if report.effective_at == Timestamp::from_micros(i64::MIN) {
            return Err(Rejection::new(
                REQUIRED_FIELD_MISSING,
                Some(Location { field: Some(7), ..report.location.clone() }),
                format!("OBR[{}]: no observation time in OBR-7 or OBX-14", number + 1),
            ));
        }
    }
    Ok(ResultMessage { identity, pid_segment, provenance: provenance(message), reports })
}

/// An MDM^T02 document.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DocumentMessage {
    pub identity: PatientIdentity,
    pub pid_segment: usize,
    pub provenance: Provenance,
    /// `MDM:` and TXA-12, the unique document number.
    pub source_key: String,
    /// `MDM:` and TXA-13, the parent document an addendum or a replacement is for.
    pub parent_key: Option<String>,
    /// TXA-2, the document type; `CP` is a care plan.
    pub document_type: String,
    pub title: String,
    pub body: String,
    pub effective_at: Timestamp,
    pub status: EntryStatus,
}

impl DocumentMessage {
    pub fn is_care_plan(&self) -> bool {
        self.document_type.eq_ignore_ascii_case("CP")
    }

    pub fn label(&self, rules: &[(String, String, PrivacyLabel)]) -> PrivacyLabel {
        let mut values = vec![("TXA-2", self.document_type.as_str())];
        values.extend(self.provenance.values());
        choose_label(rules, &values)
    }
}

/// Reads an MDM^T02: TXA-12 names the document, its text is the OBX values.
pub fn read_mdm(message: &Message, is_local_authority: &dyn Fn(&str) -> bool) -> Result<DocumentMessage, Rejection> {
    let (pid_segment, identity, _) = read_patient_identity(message, is_local_authority)?;
    let Some((index, txa)) = message.segments.iter().enumerate().find(|(_, s)| s.id == "TXA") else {
        return Err(Rejection::new(SEGMENT_SEQUENCE_ERROR, None, "MDM without a TXA segment"));
    };
    let at = |field| Some(Location::field(index + 1, "TXA", field));
    let number = txa.component(12, 1).trim();
    if number.is_empty() {
        return Err(Rejection::new(
            REQUIRED_FIELD_MISSING,
            at(12),
            "TXA-12: a document needs its unique document number",
        ));
    }
    let (document_type, type_text, _) = coded_text(txa, 2);
    if document_type.is_empty() {
        return Err(Rejection::new(REQUIRED_FIELD_MISSING, at(2), "TXA-2: a document needs its type"));
    }
    let when = [txa.value(4), txa.value(6), message.header_value(7)].into_iter().map(str::trim).find(|t| !t.is_empty());
    let effective_at = when
        .and_then(hl7_instant)
        .ok_or_else(|| Rejection::new(REQUIRED_FIELD_MISSING, at(4), "TXA-4: the document needs its date and time"))?;
    let body = message
        .segments_named("OBX")
        .flat_map(|obx| obx.repetitions(5).iter().map(|r| r.component(1).to_owned()))
        .collect::<Vec<_>>()
        .join("\n");
    let title_from_obx = message.segment("OBX").map(|obx| obx.component(3, 2).trim().to_owned()).unwrap_or_default();
    let title = [type_text, title_from_obx].into_iter().find(|t| !t.is_empty()).unwrap_or_else(|| {
        if document_type.eq_ignore_ascii_case("CP") { "Care plan".to_owned() } else { "Document".to_owned() }
    });
    let status = match txa.value(17).trim() {
        "IP" | "IN" | "DI" | "PA" => EntryStatus::Preliminary,
        _ => EntryStatus::Final,
    };
    Ok(DocumentMessage {
        identity,
        pid_segment,
        provenance: provenance(message),
        source_key: format!("MDM:{number}"),
        parent_key: Some(txa.component(13, 1).trim())
            .filter(|parent| !parent.is_empty())
            .map(|parent| format!("MDM:{parent}")),
        document_type,
        title,
        body,
        effective_at,
        status,
    })
}

/// An SIU appointment message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AppointmentMessage {
    pub identity: PatientIdentity,
    pub pid_segment: usize,
    pub provenance: Provenance,
    /// `SIU:` and SCH-1, the placer appointment id.
    pub source_key: String,
    pub title: String,
    pub body: String,
    pub start: Timestamp,
    /// When it ends, if the message says (SCH-11.5, or the start plus SCH-9/SCH-10 or
    /// AIS-7/AIS-8); never before the start.
    pub end: Option<Timestamp>,
}

impl AppointmentMessage {
    pub fn label(&self, rules: &[(String, String, PrivacyLabel)]) -> PrivacyLabel {
        choose_label(rules, &self.provenance.values())
    }
}

/// Reads an SIU message (S12 to S26): SCH-1 names the appointment; the start comes from SCH-11
/// (component 4) or AIS-4; the end from SCH-11.5, else the start plus the duration in
/// SCH-9 (units SCH-10) or AIS-7 (units AIS-8), minutes when no units are given.
pub fn read_siu(message: &Message, is_local_authority: &dyn Fn(&str) -> bool) -> Result<AppointmentMessage, Rejection> {
    let (pid_segment, identity, _) = read_patient_identity(message, is_local_authority)?;
    let Some((index, sch)) = message.segments.iter().enumerate().find(|(_, s)| s.id == "SCH") else {
        return Err(Rejection::new(SEGMENT_SEQUENCE_ERROR, None, "SIU without an SCH segment"));
    };
    let at = |field| Some(Location::field(index + 1, "SCH", field));
    let placer = sch.component(1, 1).trim();
    if placer.is_empty() {
        return Err(Rejection::new(
            REQUIRED_FIELD_MISSING,
            at(1),
            "SCH-1: an appointment needs its placer appointment id",
        ));
    }
    let start_text = [sch.component(11, 4), message.segment("AIS").map_or("", |ais| ais.value(4))]
        .into_iter()
        .map(str::trim)
        .find(|t| !t.is_empty());
    let start = start_text.and_then(hl7_instant).ok_or_else(|| {
        Rejection::new(REQUIRED_FIELD_MISSING, at(11), "SCH-11.4 / AIS-4: the appointment needs its start time")
    })?;
    let end = appointment_end(message, index, sch, start)?;
    let reason = [sch.component(7, 2), sch.component(7, 1), sch.component(6, 2)]
        .into_iter()
        .map(str::trim)
        .find(|t| !t.is_empty());
    let service = message.segment("AIS").map(|ais| ais.component(3, 2).trim().to_owned()).filter(|s| !s.is_empty());
    let title = service.clone().or(reason.map(str::to_owned)).unwrap_or_else(|| "Appointment".to_owned());
    let mut details = Vec::new();
    if let Some(location) =
        message.segment("AIL").map(|ail| ail.component(3, 1).trim().to_owned()).filter(|l| !l.is_empty())
    {
        details.push(format!("Location: {location}"));
    }
    if let Some(with) = message.segment("AIP").map(|aip| {
        let given = aip.component(3, 3).trim().to_owned();
        let family = aip.component(3, 2).trim().to_owned();
        format!("{given} {family}").trim().to_owned()
    }) && !with.is_empty()
    {
        details.push(format!("With: {with}"));
    }
    if let Some(reason) = reason.filter(|r| Some(r.to_string()) != service) {
        details.push(format!("Reason: {reason}"));
    }
    Ok(AppointmentMessage {
        identity,
        pid_segment,
        provenance: provenance(message),
        source_key: format!("SIU:{placer}"),
        title,
        body: details.join("\n"),
        start,
        end,
    })
}

/// The longest appointment Kith accepts: anything longer is a mistake in the feed.
const LONGEST_APPOINTMENT_SECONDS: f64 = 366.0 * 86_400.0;

/// When the appointment ends: SCH-11.5, else the start plus SCH-9 in SCH-10's units, else
/// the start plus AIS-7 in AIS-8's units; `None` when the message gives none of them.
fn appointment_end(
    message: &Message,
    sch_index: usize,
    sch: &crate::message::Segment,
    start: Timestamp,
) -> Result<Option<Timestamp>, Rejection> {
    let at = |segment: &'static str, index: usize, field| Some(Location::field(index + 1, segment, field));
    let end_text = sch.component(11, 5).trim();
    if !end_text.is_empty() {
        let end = hl7_instant(end_text).ok_or_else(|| {
            Rejection::new(DATA_TYPE_ERROR, at("SCH", sch_index, 11), "SCH-11.5: the end is not a date and time")
        })?;
        if end < start {
            return Err(Rejection::new(
                DATA_TYPE_ERROR,
                at("SCH", sch_index, 11),
                "SCH-11.5: the appointment ends before it starts",
            ));
        }
        return Ok(Some(end));
    }
    // (segment, its index, the segment, duration field, units field)
    let mut durations = vec![("SCH", sch_index, sch, 9, 10)];
    if let Some((index, ais)) = message.segments.iter().enumerate().find(|(_, s)| s.id == "AIS") {
        durations.push(("AIS", index, ais, 7, 8));
    }
    for (name, index, segment, duration_field, units_field) in durations {
        let duration = segment.value(duration_field).trim();
        if duration.is_empty() {
            continue;
        }
        let amount =
            duration.parse::<f64>().ok().filter(|amount| amount.is_finite() && *amount >= 0.0).ok_or_else(|| {
                Rejection::new(
                    DATA_TYPE_ERROR,
                    at(name, index, duration_field),
                    format!("{name}-{duration_field}: the appointment's duration must be a number, e.g. 30"),
                )
            })?;
        let units = [segment.component(units_field, 1), segment.component(units_field, 2)]
            .into_iter()
            .map(str::trim)
            .find(|units| !units.is_empty());
        let unit_seconds = match units {
            None => 60.0,
            Some(units) => duration_unit_seconds(units).ok_or_else(|| {
                Rejection::new(
                    DATA_TYPE_ERROR,
                    at(name, index, units_field),
                    format!("{name}-{units_field}: unknown duration units {units:?} (use s, min, h or d)"),
                )
            })?,
        };
        let seconds = amount * unit_seconds;
        if seconds > LONGEST_APPOINTMENT_SECONDS {
            return Err(Rejection::new(
                DATA_TYPE_ERROR,
                at(name, index, duration_field),
                format!("{name}-{duration_field}: an appointment longer than a year"),
            ));
        }
        return Ok(Some(start.plus(std::time::Duration::from_secs_f64(seconds))));
    }
    Ok(None)
}

/// Seconds in one of a duration's units: UCUM (`s`, `min`, `h`, `d`), the ANSI codes HL7
/// examples use (`S`, `MIN`, `HR`, `D`) and their names.
fn duration_unit_seconds(units: &str) -> Option<f64> {
    Some(match units.to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600.0,
        "d" | "day" | "days" => 86_400.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn message(text: &str) -> Message {
        parse(text.replace('\n', "\r").as_bytes()).message.unwrap()
    }

    const PID: &str = "PID|1||9434765919^^^NHS^NH||Okafor^Ngozi||19710914|F";

    #[test]
    fn instants() {
        assert_eq!(hl7_instant("20261125").unwrap().to_string(), "2026-11-25T00:00:00Z");
        assert_eq!(hl7_instant("202611251033").unwrap().to_string(), "2026-11-25T10:33:00Z");
        assert_eq!(hl7_instant("20261125103342.123+0100").unwrap().to_string(), "2026-11-25T09:33:42Z");
        assert_eq!(hl7_instant("20261125103342-0500").unwrap().to_string(), "2026-11-25T15:33:42Z");
        assert_eq!(hl7_instant("2026112510"), hl7_instant("20261125100000"));
        assert_eq!(hl7_instant("20261125253342"), None);
        assert_eq!(hl7_instant("2026-11-25"), None);
    }

    #[test]
    fn labels_prefer_privacy_then_specificity() {
        let rules = vec![
            ("PV1-3".to_owned(), "GUM".to_owned(), PrivacyLabel::SexualHealth),
            ("OBX-3".to_owned(), "PHQ9".to_owned(), PrivacyLabel::MentalHealth),
            ("MSH-3".to_owned(), "LAB".to_owned(), PrivacyLabel::General),
        ];
        assert_eq!(choose_label(&rules, &[("MSH-3", "LAB")]), PrivacyLabel::General);
        assert_eq!(choose_label(&rules, &[("MSH-3", "LAB"), ("PV1-3", "gum")]), PrivacyLabel::SexualHealth);
        assert_eq!(choose_label(&rules, &[("PV1-3", "GUM"), ("OBX-3", "PHQ9")]), PrivacyLabel::MentalHealth);
        assert_eq!(choose_label(&rules, &[("PV1-3", "ED")]), PrivacyLabel::General);
    }

    #[test]
    fn results() {
        let oru = message(&format!(
            "MSH|^~\\&|LAB|RXH|KITH|KITH|20261125||ORU^R01|9|P|2.4\n{PID}\nPV1|1|O|GUM^^^RXH\n\
             OBR|1|P123|F456|CBC^Full blood count^L|||20261124093000||||||||||||||||||C\n\
             OBX|1|NM|HB^Haemoglobin^L||135|g/L|115-165|N|||F\nOBX|2|NM|WBC^White cells^L||11.2|10*9/L|4.0-11.0|H|||F\n\
             NTE|1||Sample slightly haemolysed\n\
             OBR|2||F457|HIV^HIV antibody^L|||20261124\nOBX|1|ST|HIV^HIV Ab^L||Negative||||||F"
        ));
        let read = read_oru(&oru, &|_| false).unwrap();
        assert_eq!(read.reports.len(), 2);
        let cbc = &read.reports[0];
        assert_eq!(
            (cbc.source_key.as_str(), cbc.title.as_str(), cbc.status),
            ("ORU:F456", "Full blood count", EntryStatus::Corrected)
        );
        assert_eq!(cbc.effective_at.to_string(), "2026-11-24T09:30:00Z");
        assert_eq!(
            cbc.body(),
            "Haemoglobin: 135 g/L (range 115-165) [N]\nWhite cells: 11.2 10*9/L (range 4.0-11.0) [H]\nSample slightly haemolysed"
        );
        assert_eq!(read.provenance.point_of_care, "GUM");
        let rules = vec![("PV1-3".to_owned(), "GUM".to_owned(), PrivacyLabel::SexualHealth)];
        assert_eq!(cbc.label(&rules, &read.provenance), PrivacyLabel::SexualHealth);

        let no_time =
            message(&format!("MSH|^~\\&|LAB|RXH|||20261125||ORU^R01|9|P|2.4\n{PID}\nOBR|1||F1|X\nOBX|1|ST|A||b"));
        assert_eq!(read_oru(&no_time, &|_| false).unwrap_err().text, "OBR[1]: no observation time in OBR-7 or OBX-14");
        let no_order = message(&format!("MSH|^~\\&|LAB|RXH|||20261125||ORU^R01|9|P|2.4\n{PID}\nOBR|1|||X|||20261125"));
        assert_eq!(read_oru(&no_order, &|_| false).unwrap_err().code, "101");
    }

    #[test]
    fn documents_and_appointments() {
        let mdm = message(&format!(
            "MSH|^~\\&|EPR|RXH|||20261125||MDM^T02|9|P|2.4\nEVN|T02|20261125\n{PID}\n\
             TXA|1|CP^Crisis plan|TX|20261120||||||||DOC-77||||||AU\nOBX|1|TX|||Call the crisis line~Keep medication safe"
        ));
        let document = read_mdm(&mdm, &|_| false).unwrap();
        assert!(document.is_care_plan());
        assert_eq!((document.source_key.as_str(), document.title.as_str()), ("MDM:DOC-77", "Crisis plan"));
        assert_eq!(document.body, "Call the crisis line\nKeep medication safe");

        let siu = message(&format!(
            "MSH|^~\\&|PAS|RXH|||20261125||SIU^S12|9|P|2.4\nSCH|APT-1||||||FU^Follow-up||||^^^202612011030\n{PID}\n\
             AIS|1||CARD^Cardiology clinic\nAIL|1||OPD2^^^RXH\nAIP|1||D1^Okonkwo^Ada"
        ));
        let appointment = read_siu(&siu, &|_| false).unwrap();
        assert_eq!((appointment.source_key.as_str(), appointment.title.as_str()), ("SIU:APT-1", "Cardiology clinic"));
        assert_eq!(appointment.start.to_string(), "2026-12-01T10:30:00Z");
        assert_eq!(appointment.body, "Location: OPD2\nWith: Ada Okonkwo\nReason: Follow-up");
        assert_eq!(appointment.end, None, "no end and no duration: the end is not known");
    }

    /// An SIU with SCH and AIS fields as given (SCH-1 APT-1, start 2026-12-01 10:30).
    fn siu(sch_9_to_11: &str, ais_7_8: &str) -> Result<AppointmentMessage, Rejection> {
        let siu = message(&format!(
            "MSH|^~\\&|PAS|RXH|||20261125||SIU^S12|9|P|2.4\nSCH|APT-1||||||||{sch_9_to_11}\n{PID}\n\
             AIS|1||CARD^Cardiology clinic||||{ais_7_8}"
        ));
        read_siu(&siu, &|_| false)
    }

    #[test]
    fn an_appointment_ends_when_the_message_says() {
        let end = |sch: &str, ais: &str| siu(sch, ais).unwrap().end.map(|end| end.to_string());
        let start = "^^^202612011030";
        // SCH-11.5, the end itself.
        assert_eq!(end(&format!("||{start}^202612011115"), "").as_deref(), Some("2026-12-01T11:15:00Z"));
        // SCH-9 with SCH-10's units, in the codes feeds use.
        for (duration, units, expected) in [
            ("30", "MIN^Minutes^ANS+", "2026-12-01T11:00:00Z"),
            ("30", "min", "2026-12-01T11:00:00Z"),
            ("1.5", "HR", "2026-12-01T12:00:00Z"),
            ("90", "s", "2026-12-01T10:31:30Z"),
            ("1", "^Days", "2026-12-02T10:30:00Z"),
            // No units: minutes, as HL7 defaults them.
            ("45", "", "2026-12-01T11:15:00Z"),
        ] {
            assert_eq!(
                end(&format!("{duration}|{units}|{start}"), "").as_deref(),
                Some(expected),
                "{duration} {units}"
            );
        }
        // SCH-11.5 wins over SCH-9; SCH-9 over AIS-7; AIS-7 when SCH says nothing.
        assert_eq!(end(&format!("30|min|{start}^202612011040"), "").as_deref(), Some("2026-12-01T10:40:00Z"));
        assert_eq!(end(&format!("30|min|{start}"), "20|min").as_deref(), Some("2026-12-01T11:00:00Z"));
        assert_eq!(end(&format!("||{start}"), "20|min").as_deref(), Some("2026-12-01T10:50:00Z"));
        assert_eq!(end(&format!("||{start}"), "20").as_deref(), Some("2026-12-01T10:50:00Z"));
    }

    #[test]
    fn a_wrong_end_or_duration_is_rejected_with_the_field() {
        let start = "^^^202612011030";
        for (sch, ais, text) in [
            (format!("||{start}^202612011000"), "", "SCH-11.5: the appointment ends before it starts"),
            (format!("||{start}^tomorrow"), "", "SCH-11.5: the end is not a date and time"),
            (format!("half an hour|min|{start}"), "", "SCH-9: the appointment's duration must be a number, e.g. 30"),
            (format!("-5|min|{start}"), "", "SCH-9: the appointment's duration must be a number, e.g. 30"),
            (
                format!("30|fortnights|{start}"),
                "",
                "SCH-10: unknown duration units \"fortnights\" (use s, min, h or d)",
            ),
            (format!("400|d|{start}"), "", "SCH-9: an appointment longer than a year"),
            (format!("||{start}"), "20|parsecs", "AIS-8: unknown duration units \"parsecs\" (use s, min, h or d)"),
        ] {
            let rejection = siu(&sch, ais).unwrap_err();
            assert_eq!((rejection.code, rejection.text.as_str()), ("102", text), "{sch} / {ais}");
            assert!(rejection.location.is_some(), "{text}: the ERR segment names the field");
        }
    }
}
