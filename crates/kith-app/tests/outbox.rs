//! Delivering the outbox on both backends, through a fake transport that fails when told
//! to: back-off and retry, permanent failures, giving up after eight attempts, codes
//! forgotten once sent or given up, letters left for their own export.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kith_app::outbox::{DeliveryError, DeliveryReport, Envelope, MAX_DELIVERY_ATTEMPTS, Transport, retry_delay};
use kith_app::{App, ManualClock};
use kith_core::Timestamp;
use kith_store::{OutboxMessage, OutboxRow};
use kith_test_support::{TestDatabase, on_each_engine};
use uuid::Uuid;

const START: Timestamp = Timestamp::from_micros(1_795_000_000_000_000);
const URL: &str = "http://127.0.0.1:8080";
const CODE: &str = "5f2c0e9a4b7d4c1e8a6b3d2f1e0c9b8a5f2c0e9a4b7d4c1e8a6b3d2f1e0c9b8a";

/// What the fake transport was asked to send.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sent {
    id: Uuid,
    channel: &'static str,
    to: String,
    subject: String,
    text: String,
}

/// Answers each send with the next scripted result (success once the script runs out).
#[derive(Default)]
struct FakeTransport {
    script: Mutex<VecDeque<Result<(), DeliveryError>>>,
    sent: Mutex<Vec<Sent>>,
}

impl FakeTransport {
    fn failing(results: impl IntoIterator<Item = Result<(), DeliveryError>>) -> Self {
        Self { script: Mutex::new(results.into_iter().collect()), sent: Mutex::default() }
    }

    fn answer(&self, sent: Sent) -> Result<(), DeliveryError> {
        let result = self.script.lock().unwrap().pop_front().unwrap_or(Ok(()));
        if result.is_ok() {
            self.sent.lock().unwrap().push(sent);
        }
        result
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }
}

impl Transport for FakeTransport {
    fn send_email(&self, envelope: &Envelope<'_>, subject: &str, text: &str) -> Result<(), DeliveryError> {
        self.answer(Sent {
            id: envelope.id,
            channel: "email",
            to: envelope.to.to_owned(),
            subject: subject.to_owned(),
            text: text.to_owned(),
        })
    }

    fn send_sms(&self, envelope: &Envelope<'_>, text: &str) -> Result<(), DeliveryError> {
        self.answer(Sent {
            id: envelope.id,
            channel: "sms",
            to: envelope.to.to_owned(),
            subject: String::new(),
            text: text.to_owned(),
        })
    }
}

struct Setup {
    _database: TestDatabase,
    app: App,
    clock: Arc<ManualClock>,
}

fn setup(database: TestDatabase) -> Setup {
    let clock = Arc::new(ManualClock::new(START));
    let app = App::new(database.store(), clock.clone());
    Setup { _database: database, app, clock }
}

fn enqueue(app: &App, channel: &'static str, template: &'static str, payload: &str, secret: Option<&str>) -> Uuid {
    let message = OutboxMessage {
        id: Uuid::now_v7(),
        channel,
        template: template.to_owned(),
        recipient: if channel == "sms" { "+447700900123".into() } else { "ngozi@example.org".into() },
        payload: payload.to_owned(),
        secret: secret.map(str::to_owned),
        created_at: app.now(),
    };
    app.store().write(|tx| tx.enqueue(&message)).unwrap();
    message.id
}

fn row(app: &App, id: Uuid) -> OutboxRow {
    app.outbox_messages(None, 1000).unwrap().into_iter().find(|row| row.message.id == id).unwrap()
}

fn reset_payload() -> String {
    format!(r#"{{"account":"{}"}}"#, Uuid::now_v7())
}

on_each_engine!(a_failed_send_is_tried_again_after_a_back_off_then_sent);
fn a_failed_send_is_tried_again_after_a_back_off_then_sent(database: TestDatabase) {
    let Setup { _database: _kept, app, clock } = setup(database);
    let reset = enqueue(&app, "email", "password_reset", &reset_payload(), Some(CODE));
    let letter = enqueue(&app, "letter", "team_added_patient", r#"{"patient":"x"}"#, None);
    let transport = FakeTransport::failing([Err(DeliveryError::transient("SMTP 421 transient failure"))]);

    let report = app.deliver_outbox(&transport, URL, 10).unwrap();
    assert_eq!(report, DeliveryReport { claimed: 1, sent: 0, retrying: 1, dead: 0 });
    let failed = row(&app, reset);
    assert_eq!((failed.status.as_str(), failed.attempts), ("failed", 1));
    assert_eq!(failed.next_attempt_at, START.plus(Duration::from_secs(30)));
    assert_eq!(failed.last_error.as_deref(), Some("SMTP 421 transient failure"));
    assert_eq!(failed.message.secret.as_deref(), Some(CODE), "kept until delivered");

    // Not due yet: nothing is claimed.
    clock.advance(Duration::from_secs(29));
    assert_eq!(app.deliver_outbox(&transport, URL, 10).unwrap(), DeliveryReport::default());

    clock.advance(Duration::from_secs(1));
    let report = app.deliver_outbox(&transport, URL, 10).unwrap();
    assert_eq!(report, DeliveryReport { claimed: 1, sent: 1, retrying: 0, dead: 0 });
    let sent = row(&app, reset);
    assert_eq!((sent.status.as_str(), sent.attempts), ("sent", 1));
    assert_eq!(sent.sent_at, Some(START.plus(Duration::from_secs(30))));
    assert_eq!((sent.message.secret, sent.last_error), (None, None));

    let delivered = transport.sent();
    assert_eq!(delivered.len(), 1);
    assert_eq!((delivered[0].id, delivered[0].channel), (reset, "email"));
    assert_eq!(delivered[0].to, "ngozi@example.org");
    assert_eq!(delivered[0].subject, "Reset your Kith password");
    assert!(delivered[0].text.contains(&format!("{URL}/password-reset/{CODE}")), "{}", delivered[0].text);

    // The letter waits for its own export.
    assert_eq!(row(&app, letter).status, "pending");
    assert_eq!(app.deliver_outbox(&transport, URL, 10).unwrap(), DeliveryReport::default());
}

on_each_engine!(permanent_failures_and_eight_failed_attempts_give_up_and_forget_the_code);
fn permanent_failures_and_eight_failed_attempts_give_up_and_forget_the_code(database: TestDatabase) {
    let Setup { _database: _kept, app, clock } = setup(database);
    // An SMS refused for good is dead at once, its code forgotten.
    let sms = enqueue(&app, "sms", "password_reset", &reset_payload(), Some(CODE));
    let transport = FakeTransport::failing([Err(DeliveryError::permanent("SMS endpoint HTTP 400"))]);
    let report = app.deliver_outbox(&transport, URL, 10).unwrap();
    assert_eq!(report, DeliveryReport { claimed: 1, sent: 0, retrying: 0, dead: 1 });
    let dead = row(&app, sms);
    assert_eq!((dead.status.as_str(), dead.attempts, dead.message.secret), ("dead", 1, None));
    assert_eq!(dead.last_error.as_deref(), Some("SMS endpoint HTTP 400"));

    // An email that keeps failing is tried eight times, backing off, then given up.
    let email = enqueue(&app, "email", "password_reset", &reset_payload(), Some(CODE));
    let attempts = usize::try_from(MAX_DELIVERY_ATTEMPTS).unwrap();
    let transport = FakeTransport::failing(vec![Err(DeliveryError::transient("SMTP timeout")); attempts]);
    for attempt in 1..=MAX_DELIVERY_ATTEMPTS {
        let report = app.deliver_outbox(&transport, URL, 10).unwrap();
        assert_eq!(report.claimed, 1, "attempt {attempt}");
        let current = row(&app, email);
        assert_eq!(current.attempts, attempt);
        if attempt < MAX_DELIVERY_ATTEMPTS {
            assert_eq!(current.status, "failed");
            assert_eq!(current.next_attempt_at, app.now().plus(retry_delay(attempt - 1)));
            assert_eq!(current.message.secret.as_deref(), Some(CODE));
            clock.advance(retry_delay(attempt - 1));
        } else {
            assert_eq!(report.dead, 1);
            assert_eq!((current.status.as_str(), current.message.secret), ("dead", None));
        }
    }
    clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(app.deliver_outbox(&transport, URL, 10).unwrap(), DeliveryReport::default());
    assert!(transport.sent().is_empty());
}

on_each_engine!(an_sms_carries_text_only_and_a_message_that_cannot_be_worded_is_given_up);
fn an_sms_carries_text_only_and_a_message_that_cannot_be_worded_is_given_up(database: TestDatabase) {
    let Setup { _database: _kept, app, .. } = setup(database);
    let payload =
        format!(r#"{{"patient":"{}","organisation":"Riverside Hospitals","expires":"2026-07-01"}}"#, Uuid::now_v7());
    let invitation = enqueue(&app, "sms", "patient_invitation", &payload, Some(CODE));
    // Kith wrote a code-bearing message without its code: it cannot be sent.
    let broken = enqueue(&app, "email", "password_reset", &reset_payload(), None);
    let transport = FakeTransport::default();
    let report = app.deliver_outbox(&transport, URL, 10).unwrap();
    assert_eq!(report, DeliveryReport { claimed: 2, sent: 1, retrying: 0, dead: 1 });

    let sent = transport.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].id, sent[0].channel, sent[0].to.as_str()), (invitation, "sms", "+447700900123"));
    assert!(sent[0].subject.is_empty());
    assert!(sent[0].text.contains(&format!("{URL}/register?code={CODE}")), "{}", sent[0].text);

    let dead = row(&app, broken);
    assert_eq!(dead.status, "dead");
    let error = dead.last_error.unwrap();
    assert!(error.starts_with("cannot render password_reset"), "{error}");
    let counts = app.outbox_counts().unwrap();
    assert!(counts.iter().any(|c| (c.channel.as_str(), c.status.as_str(), c.count) == ("sms", "sent", 1)));
    assert!(app.outbox_messages(Some("bogus"), 10).is_err());
    assert_eq!(app.outbox_messages(Some("dead"), 10).unwrap().len(), 1);
}
