//! Which of Kith's notices reach a patient, and by which channel: their choices, within
//! the rule that emergency access to their record and changes made to their sharing by
//! someone else always reach them.

use crate::team::coded_enum;

coded_enum!(
    /// How a patient wants to hear of one kind of event.
    NotifyBy {
        Email => "email",
        Sms => "sms",
        Both => "both",
        Off => "off",
    }
);

/// A patient's choices. Without choices of their own: a team added and emergency access by
/// email, new entries not at all.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NotificationSettings {
    pub team_added: NotifyBy,
    pub new_entries: NotifyBy,
    /// Never `Off` in effect: emergency access is always told (see [`notification_reach`]).
    pub break_glass: NotifyBy,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings { team_added: NotifyBy::Email, new_entries: NotifyBy::Off, break_glass: NotifyBy::Email }
    }
}

/// What happened to the patient's record that Kith may tell them of.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PatientEvent {
    /// A speciality team was linked to their record.
    TeamAdded,
    /// A team added an entry (a result, a document, a note…) to their record.
    NewEntries,
    /// A professional broke the glass on their record.
    BreakGlass,
    /// Someone else changed who sees their record (on their behalf, or sharing turned off).
    SharingChanged,
}

impl PatientEvent {
    /// Whether the patient is told whatever they chose.
    pub const fn always_told(self) -> bool {
        matches!(self, PatientEvent::BreakGlass | PatientEvent::SharingChanged)
    }
}

/// The channels a notice goes by.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Reach {
    pub email: bool,
    pub sms: bool,
}

/// How the patient hears of `event`: the channels they chose for it, among those their
/// record has (an email address, a mobile number). An event they are always told of is
/// told even when they chose `Off`, by email. When no chosen channel is on the record,
/// the other one is used: they asked to be told.
pub fn notification_reach(
    event: PatientEvent,
    settings: &NotificationSettings,
    has_email: bool,
    has_mobile: bool,
) -> Reach {
    let chosen = match event {
        PatientEvent::TeamAdded => settings.team_added,
        PatientEvent::NewEntries => settings.new_entries,
        PatientEvent::BreakGlass => settings.break_glass,
        PatientEvent::SharingChanged => NotifyBy::Email,
    };
    let chosen = match chosen {
        NotifyBy::Off if event.always_told() => NotifyBy::Email,
        NotifyBy::Off => return Reach::default(),
        other => other,
    };
    let wants_email = matches!(chosen, NotifyBy::Email | NotifyBy::Both);
    let wants_sms = matches!(chosen, NotifyBy::Sms | NotifyBy::Both);
    let reach = Reach { email: wants_email && has_email, sms: wants_sms && has_mobile };
    if reach != Reach::default() {
        return reach;
    }
    Reach { email: has_email, sms: !has_email && has_mobile }
}
