//! Registering from an invitation, and the walkthrough after it: the Patient Record Team's
//! welcome, then each team already linked to the record with what it sees in plain words,
//! confirmed or changed one by one, then the patient's home page.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use kith_app::AppError;
use kith_app::invitations::{NO_MATCH, normalise_invitation_code};
use kith_app::password::MINIMUM_PASSWORD_LENGTH;
use kith_core::text::{EmailAddress, Secret};
use kith_core::{Date, LabelSet, PrivacyLabel};
use serde::Deserialize;

use super::csrf::{AnonymousCsrfForm, CsrfForm};
use super::error::{PageError, PageResult, blocking};
use super::guard::{ClientAddress, SignedIn};
use super::{NoFields, PageRoute, Shell, anonymous_page, render, see_other, see_other_signed_in};
use crate::WebState;

pub(crate) fn routes() -> Vec<PageRoute> {
    vec![
        PageRoute::get("/register", register_page),
        PageRoute::post("/register", register_check),
        PageRoute::post("/register/account", register_account),
        PageRoute::get("/welcome", welcome),
        PageRoute::post("/welcome/finish", welcome_finish),
    ]
}

/// A label set in words: "general health and mental health", or "none of your health information".
pub fn labels_in_words(labels: LabelSet) -> String {
    let words: Vec<&str> = labels.iter().map(PrivacyLabel::plain_words).collect();
    match words.as_slice() {
        [] => "none of your health information".to_owned(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

// ----- registering ----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    shell: Shell,
    error_field: &'static str,
    invitation: String,
    activation: String,
    day: String,
    month: String,
    year: String,
    error: Option<&'static str>,
}

#[derive(Deserialize)]
struct CodeQuery {
    code: Option<String>,
}

async fn register_page(State(state): State<WebState>, headers: HeaderMap, Query(query): Query<CodeQuery>) -> Response {
    // A link from an email or SMS carries both codes; fill them in.
    let code = query.code.as_deref().map(normalise_invitation_code).unwrap_or_default();
    let (invitation, activation) =
        if code.len() == 16 { kith_app::invitations::split_codes(&code) } else { (String::new(), String::new()) };
    anonymous_page(&headers, &state, |shell| {
        render(&RegisterPage {
            shell,
            error_field: "",
            invitation,
            activation,
            day: String::new(),
            month: String::new(),
            year: String::new(),
            error: None,
        })
    })
}

#[derive(Deserialize)]
struct RegisterForm {
    #[serde(default)]
    invitation: String,
    #[serde(default)]
    activation: String,
    #[serde(default)]
    day: String,
    #[serde(default)]
    month: String,
    #[serde(default)]
    year: String,
}

pub(crate) fn date_from(day: &str, month: &str, year: &str) -> Option<Date> {
    let (day, month, year) = (day.trim().parse().ok()?, month.trim().parse().ok()?, year.trim().parse().ok()?);
    Date::new(year, month, day).ok()
}

#[derive(Template)]
#[template(path = "register_account.html")]
struct AccountPage {
    shell: Shell,
    error_field: &'static str,
    given_name: String,
    codes: String,
    birth_date: String,
    email: String,
    minimum: usize,
    error: Option<String>,
}

async fn register_check(
    State(state): State<WebState>,
    headers: HeaderMap,
    ClientAddress(address): ClientAddress,
    AnonymousCsrfForm(form): AnonymousCsrfForm<RegisterForm>,
) -> PageResult {
    state.guards.attempt(address)?;
    let codes = normalise_invitation_code(&format!("{}{}", form.invitation, form.activation));
    let birth_date = date_from(&form.day, &form.month, &form.year);
    let again = |field: &'static str, error: &'static str| {
        let form = &form;
        anonymous_page(&headers, &state, |shell| {
            render(&RegisterPage {
                shell,
                error_field: field,
                invitation: form.invitation.trim().to_owned(),
                activation: form.activation.trim().to_owned(),
                day: form.day.trim().to_owned(),
                month: form.month.trim().to_owned(),
                year: form.year.trim().to_owned(),
                error: Some(error),
            })
        })
    };
    if birth_date.is_none() {
        let error = "Enter your date of birth as numbers: day, month and year, for example 15 4 1990.";
        return Ok(again("dob-day", error));
    }
    let check = codes.clone();
    let found = blocking(&state.app, move |app| app.check_invitation(&check, birth_date)).await??;
    let Some(found) = found else { return Ok(again("", NO_MATCH)) };
    let birth_date = birth_date.map(|date| date.to_string()).unwrap_or_default();
    Ok(anonymous_page(&headers, &state, |shell| {
        render(&AccountPage {
            shell,
            error_field: "",
            given_name: found.given_name.clone(),
            codes: codes.clone(),
            birth_date: birth_date.clone(),
            email: found.email.as_ref().map(|email| email.to_string()).unwrap_or_default(),
            minimum: MINIMUM_PASSWORD_LENGTH,
            error: None,
        })
    }))
}

#[derive(Deserialize)]
struct AccountForm {
    #[serde(default)]
    codes: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    /// "yes" to set up two-step verification before the walkthrough.
    #[serde(default)]
    two_factor: String,
}

async fn register_account(
    State(state): State<WebState>,
    headers: HeaderMap,
    ClientAddress(address): ClientAddress,
    AnonymousCsrfForm(form): AnonymousCsrfForm<AccountForm>,
) -> PageResult {
    state.guards.attempt(address)?;
    let birth_date = Date::parse(form.birth_date.trim()).ok();
    let again = |field: &'static str, error: String| {
        let form = &form;
        anonymous_page(&headers, &state, |shell| {
            render(&AccountPage {
                shell,
                error_field: field,
                given_name: String::new(),
                codes: form.codes.clone(),
                birth_date: form.birth_date.clone(),
                email: form.email.trim().to_owned(),
                minimum: MINIMUM_PASSWORD_LENGTH,
                error: Some(error),
            })
        })
    };
    let Ok(email) = EmailAddress::parse(&form.email) else {
        return Ok(again("email", "Enter an email address like name@example.org.".to_owned()));
    };
    if form.password != form.confirm {
        return Ok(again("confirm", "The two passwords are different. Type the same password twice.".to_owned()));
    }
    let codes = form.codes.clone();
    let password = Secret::new(form.password.clone());
    let registered = move |app: &kith_app::App| app.register_patient(&codes, birth_date, &email, &password);
    Ok(match state.guards.hash(&state.app, registered).await? {
        Ok(session) => {
            // Two-step set-up first when chosen; its "Continue" leads on to the walkthrough.
            let next = if form.two_factor == "yes" { "/account/two-factor" } else { "/welcome" };
            see_other_signed_in(&state, next, session.secret.expose())
        }
        Err(AppError::Invalid(message)) if message == NO_MATCH => see_other("/register"),
        Err(AppError::Invalid(message)) => again(
            "password",
            match message.strip_prefix("password: ") {
                Some(rest) => format!("Your password {rest}."),
                None => message,
            },
        ),
        Err(AppError::Conflict(message)) => again("email", message),
        Err(error) => return Err(PageError::from(error)),
    })
}

// ----- the walkthrough ------------------------------------------------------------------------

/// A change made to the patient's consent on their behalf, in words.
pub struct OnBehalfLine {
    when: String,
    who: String,
    team: String,
    organisation: String,
    change: String,
    reason: String,
}

impl OnBehalfLine {
    fn from(change: &kith_app::OnBehalfChange) -> Self {
        let seconds_of_day = change.at.as_micros().div_euclid(1_000_000).rem_euclid(86_400);
        let when = format!("{} {:02}:{:02} UTC", change.at.date(), seconds_of_day / 3600, seconds_of_day / 60 % 60);
        let words = match change.before {
            Some(before) => {
                let added = LabelSet::from_labels(change.after.iter().filter(|label| !before.contains(*label)));
                let removed = LabelSet::from_labels(before.iter().filter(|label| !change.after.contains(*label)));
                let mut words = Vec::new();
                if !added.is_empty() {
                    words.push(format!("It can now also see {}.", labels_in_words(added)));
                }
                if !removed.is_empty() {
                    words.push(format!("It can no longer see {}.", labels_in_words(removed)));
                }
                if words.is_empty() {
                    words.push(format!("It still sees {}.", labels_in_words(change.after)));
                }
                words.join(" ")
            }
            None => format!("It can now see {}.", labels_in_words(change.after)),
        };
        OnBehalfLine {
            when,
            who: change.who.clone(),
            team: change.team.clone(),
            organisation: change.organisation.clone(),
            change: words,
            reason: change.reason.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "welcome.html")]
struct WelcomePage {
    shell: Shell,
    step: usize,
    steps: usize,
    welcome: String,
    /// Shown with the welcome (step 1): every change made on the patient's behalf.
    on_behalf: Vec<OnBehalfLine>,
    finished: bool,
}

#[derive(Deserialize)]
struct StepQuery {
    step: Option<usize>,
}

/// The walkthrough's steps: the welcome (with the changes made on the patient's behalf),
/// then who sees what — the sharing page itself (`/my/sharing?walkthrough=1`), one page for
/// the walkthrough and for later — then the end.
pub(crate) const WALKTHROUGH_STEPS: usize = 3;

async fn welcome(State(state): State<WebState>, signed_in: SignedIn, Query(query): Query<StepQuery>) -> PageResult {
    if signed_in.session.patient.is_none() {
        return Ok(see_other("/"));
    }
    let step = query.step.unwrap_or(1).clamp(1, WALKTHROUGH_STEPS);
    if step == 2 {
        return Ok(see_other("/my/sharing?walkthrough=1"));
    }
    let account = signed_in.session.account.id;
    let walkthrough = blocking(&state.app, move |app| app.walkthrough(account)).await??;
    Ok(render(&WelcomePage {
        shell: Shell::signed_in(&signed_in, None),
        step,
        steps: WALKTHROUGH_STEPS,
        welcome: walkthrough.welcome,
        on_behalf: walkthrough.on_behalf.iter().map(OnBehalfLine::from).collect(),
        finished: step == WALKTHROUGH_STEPS,
    }))
}

async fn welcome_finish(
    State(state): State<WebState>,
    signed_in: SignedIn,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> PageResult {
    let account = signed_in.session.account.id;
    blocking(&state.app, move |app| app.finish_walkthrough(account)).await??;
    Ok(see_other("/"))
}
