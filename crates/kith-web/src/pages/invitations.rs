//! Invitations to join a team, for the person invited: listed on their home page with a
//! form to accept or decline each (CSRF-checked like every signed-in form). Until they
//! accept, an invitation grants nothing.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use kith_app::AppError;
use kith_app::membership_invitations::Answer;
use kith_core::{AccountId, MembershipInvitationId};
use serde::Deserialize;

use super::csrf::CsrfForm;
use super::error::{PageError, PageResult, blocking};
use super::guard::SignedIn;
use super::{PageRoute, see_other};
use crate::WebState;

pub(crate) fn routes() -> Vec<PageRoute> {
    vec![PageRoute::post("/account/invitations/{invitation}", answer)]
}

/// One invitation as the home page shows it.
pub struct InvitationView {
    pub id: String,
    pub team: String,
    pub organisation: String,
    pub role: String,
}

/// The invitations waiting for `account`'s answer.
pub(crate) async fn waiting(state: &WebState, account: AccountId) -> Result<Vec<InvitationView>, PageError> {
    let waiting = blocking(&state.app, move |app| app.membership_invitations_for(account)).await??;
    Ok(waiting
        .into_iter()
        .map(|waiting| InvitationView {
            id: waiting.invitation.id.to_string(),
            team: waiting.team.name.to_string(),
            organisation: waiting.organisation.name.to_string(),
            role: waiting.invitation.role.to_string(),
        })
        .collect())
}

#[derive(Deserialize)]
struct AnswerForm {
    #[serde(default)]
    answer: String,
}

async fn answer(
    State(state): State<WebState>,
    signed_in: SignedIn,
    Path(invitation): Path<String>,
    CsrfForm(form): CsrfForm<AnswerForm>,
) -> PageResult {
    let answer = match form.answer.as_str() {
        "accept" => Answer::Accept,
        "decline" => Answer::Decline,
        _ => return Err(PageError::refused(StatusCode::BAD_REQUEST, "Choose to accept or decline the invitation.\n")),
    };
    let Ok(invitation) = invitation.parse::<MembershipInvitationId>() else {
        return Err(PageError::refused(StatusCode::NOT_FOUND, "No such invitation.\n"));
    };
    let account = signed_in.session.account.id;
    match blocking(&state.app, move |app| app.answer_membership_invitation(account, invitation, answer)).await? {
        Ok(_) if answer == Answer::Accept => Ok(see_other("/?done=invitation-accepted")),
        Ok(_) => Ok(see_other("/?done=invitation-declined")),
        Err(AppError::Denied) => Err(PageError::refused(
            StatusCode::NOT_FOUND,
            "No such invitation, or it was already answered or withdrawn.\n",
        )),
        Err(error) => Err(PageError::from(error)),
    }
}
