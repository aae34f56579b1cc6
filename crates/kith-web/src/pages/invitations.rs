//! Invitations to join a team, for the person invited: listed on their home page with a
//! form to accept or decline each (CSRF-checked like every signed-in form). Until they
//! accept, an invitation grants nothing.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kith_app::AppError;
use kith_app::membership_invitations::Answer;
use kith_core::{AccountId, MembershipInvitationId};
use serde::Deserialize;

use super::guard::{self, SignedIn};
use super::{see_other, signed_in_form_ok};
use crate::WebState;

pub fn routes() -> Router<WebState> {
    Router::new().route("/account/invitations/{invitation}", post(answer))
}

/// One invitation as the home page shows it.
pub struct InvitationView {
    pub id: String,
    pub team: String,
    pub organisation: String,
    pub role: String,
}

/// The invitations waiting for `account`'s answer.
pub(crate) async fn waiting(state: &WebState, account: AccountId) -> Result<Vec<InvitationView>, Response> {
    let app = state.app.clone();
    match tokio::task::spawn_blocking(move || app.membership_invitations_for(account)).await {
        Ok(Ok(waiting)) => Ok(waiting
            .into_iter()
            .map(|waiting| InvitationView {
                id: waiting.invitation.id.to_string(),
                team: waiting.team.name.to_string(),
                organisation: waiting.organisation.name.to_string(),
                role: waiting.invitation.role.to_string(),
            })
            .collect()),
        _ => Err(guard::internal_error()),
    }
}

#[derive(Deserialize)]
struct AnswerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    answer: String,
}

async fn answer(
    State(state): State<WebState>,
    headers: HeaderMap,
    signed_in: SignedIn,
    Path(invitation): Path<String>,
    axum::Form(form): axum::Form<AnswerForm>,
) -> Response {
    if !signed_in_form_ok(&headers, &signed_in, &form.csrf) {
        return guard::csrf_refused();
    }
    let answer = match form.answer.as_str() {
        "accept" => Answer::Accept,
        "decline" => Answer::Decline,
        _ => return (StatusCode::BAD_REQUEST, "Choose to accept or decline the invitation.\n").into_response(),
    };
    let Ok(invitation) = invitation.parse::<MembershipInvitationId>() else {
        return (StatusCode::NOT_FOUND, "No such invitation.\n").into_response();
    };
    let app = state.app.clone();
    let account = signed_in.session.account.id;
    match tokio::task::spawn_blocking(move || app.answer_membership_invitation(account, invitation, answer)).await {
        Ok(Ok(_)) if answer == Answer::Accept => see_other("/?done=invitation-accepted"),
        Ok(Ok(_)) => see_other("/?done=invitation-declined"),
        Ok(Err(AppError::Denied)) => {
            (StatusCode::NOT_FOUND, "No such invitation, or it was already answered or withdrawn.\n").into_response()
        }
        _ => guard::internal_error(),
    }
}
