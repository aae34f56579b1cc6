//! Label rules: which privacy label an organisation's results get, by field and value.
//! Every change is an operator's, audited.

use kith_core::audit::Channel;
use kith_core::text::OrganisationCode;

use crate::organisations::organisation_by_code;
use crate::{App, AppError, AppResult, AuditBuilder, Operator};

impl App {
    /// Adds (or changes) a label rule: incoming data whose `field` (PV1-3, PV1-10, OBR-4,
    /// OBX-3, TXA-2 or MSH-3) has `value` gets `label`. Applies to messages received from now
    /// on (and to rejected ones when reprocessed).
    pub fn add_label_rule(
        &self,
        operator: &Operator,
        code: &OrganisationCode,
        field: &str,
        value: &str,
        label: kith_core::PrivacyLabel,
    ) -> AppResult<()> {
        let field = field.trim().to_ascii_uppercase();
        if !kith_hl7::clinical::LABEL_RULE_FIELDS.contains(&field.as_str()) {
            return Err(AppError::Invalid(format!(
                "field: {field:?} is not one of {}",
                kith_hl7::clinical::LABEL_RULE_FIELDS.join(", ")
            )));
        }
        let value = value.trim();
        if value.is_empty() || value.len() > 64 || value.chars().any(|c| c.is_control() || "|^~\\&".contains(c)) {
            return Err(AppError::Invalid("value: 1 to 64 characters, as sent (a code, not a description)".to_owned()));
        }
        let now = self.now();
        self.store.write(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            tx.put_label_rule(organisation.id, &field, value, label, now)?;
            tx.audit(
                AuditBuilder::new(now, operator.actor(), Channel::Cli, "organisation.settings")
                    .organisation(organisation.id)
                    .subject(format!("label_rule {field}={value} -> {label}"))
                    .basis("administration")
                    .build(),
            );
            Ok(())
        })
    }

    /// An organisation's label rules: (field, value, label).
    pub fn label_rules(&self, code: &OrganisationCode) -> AppResult<Vec<(String, String, kith_core::PrivacyLabel)>> {
        self.store.read(|tx| {
            let organisation = organisation_by_code(tx, code)?;
            Ok(tx.label_rules(organisation.id)?)
        })
    }
}
