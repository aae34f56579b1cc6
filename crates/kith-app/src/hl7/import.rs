//! `kith hl7 import` with several write transactions in flight.
//!
//! On PostgreSQL a backfill spends most of its time waiting for round trips, one statement
//! after another; several connections at once multiply its rate. Order is what makes that
//! safe: messages that could touch the same record or the same stored message must be
//! applied in file order. So a run of messages is split into groups that share nothing that
//! orders them:
//!
//! - no identifier value in PID-3 or MRG-1 (under any assigning authority, compared without
//!   spaces, hyphens or case),
//! - no existing record that those identifiers lead to (as the feed finds records, merged
//!   records resolved to their survivor),
//! - no email address (PID-3 under `EMAIL`, or PID-13), nor the record that has it,
//! - no control id (MSH-3, MSH-4, MSH-10: a repeat must find what the first stored).
//!
//! Each group is applied in file order by one worker; different groups touch different
//! records, so applying them side by side gives every message the outcome a one-by-one
//! import gives. The comparison is deliberately coarse: two messages that share a value by
//! chance are merely kept in order.

use std::collections::HashMap;

use kith_core::PatientId;
use kith_core::patient::{LocalIdentifier, NhsNumber};
use kith_core::text::{EmailAddress, OrganisationCode};
use kith_hl7::Message;
use kith_hl7::adt::read_identifier_list;

use super::bulk::ingest_import_batch;
use super::feed::FeedCache;
use super::ingest::{Ingested, store_unapplied};
use super::ordering::{ordering_keys, pid13_emails};
use super::reading::Reading;
use super::stop::is_unavailable;
use crate::{App, AppError, AppResult, Operator};

/// The most workers an import runs.
pub const MAX_IMPORT_WORKERS: usize = 32;

impl App {
    /// Ingests an organisation's messages, given in file order, as `kith hl7 import` does:
    /// `batch` messages per transaction — the batch's plain registrations written together
    /// ([`super::bulk`]), every other message in its own savepoint — with up to
    /// `workers` transactions in flight over groups of messages that cannot affect one
    /// another (see the module's documentation). The outcomes come back in the order given.
    pub fn import_hl7(
        &self,
        organisation: &OrganisationCode,
        operator: &Operator,
        messages: &[&[u8]],
        workers: usize,
        batch: usize,
    ) -> AppResult<Vec<Ingested>> {
        let workers = workers.clamp(1, MAX_IMPORT_WORKERS).min(messages.len().max(1));
        let batch = batch.max(1);
        if workers == 1 {
            // Reading the batches (parsing; nothing of the database) runs on a second
            // thread, at most one batch ahead of this one, which applies them in order.
            let chunks: Vec<&[&[u8]]> = messages.chunks(batch).collect();
            return std::thread::scope(|scope| {
                let (ahead, readings) = std::sync::mpsc::sync_channel::<Vec<Reading>>(1);
                let to_read = &chunks;
                scope.spawn(move || {
                    for chunk in to_read {
                        // The receiver is gone when applying failed: stop reading.
                        if ahead.send(chunk.iter().map(|raw| Reading::of(raw)).collect()).is_err() {
                            break;
                        }
                    }
                });
                let mut outcomes = Vec::with_capacity(messages.len());
                // A panic of the reading thread ends this loop early and is raised again
                // when the scope ends.
                for (chunk, readings) in chunks.iter().zip(readings) {
                    let part: Vec<(&Reading, &[u8])> = readings.iter().zip(chunk.iter().copied()).collect();
                    outcomes.extend(self.ingest_import_part(organisation, operator, &part)?);
                }
                Ok(outcomes)
            });
        }
        // Read each message and find the records it names: a slice per worker.
        let slice = messages.len().div_ceil(workers);
        let read: Vec<(Reading, Vec<String>)> =
            in_parallel(messages.chunks(slice).map(|part| move || self.read_with_keys(organisation, part)).collect())?
                .into_iter()
                .flatten()
                .collect();
        let groups = independent_groups(read.iter().map(|(_, keys)| keys.as_slice()));
        let shares = share_out(groups, workers);
        let readings: Vec<Reading> = read.into_iter().map(|(reading, _)| reading).collect();
        let readings = &readings;
        let applied = in_parallel(
            shares
                .into_iter()
                .map(|share| {
                    move || {
                        let mut outcomes = Vec::with_capacity(share.len());
                        for indexes in share.chunks(batch) {
                            let part: Vec<(&Reading, &[u8])> =
                                indexes.iter().map(|&i| (&readings[i], messages[i])).collect();
                            let ingested = self.ingest_import_part(organisation, operator, &part)?;
                            outcomes.extend(indexes.iter().copied().zip(ingested));
                        }
                        Ok(outcomes)
                    }
                })
                .collect(),
        )?;
        let mut outcomes: Vec<Option<Ingested>> = vec![None; messages.len()];
        for (index, ingested) in applied.into_iter().flatten() {
            outcomes[index] = Some(ingested);
        }
        // Every message is in exactly one share, so every outcome is there.
        Ok(outcomes.into_iter().map(|outcome| outcome.expect("each message is in one share")).collect())
    }

    /// Ingests one batch of an import in one transaction (see [`super::bulk`]). A batch
    /// whose transaction fails is applied again one message at a time, so that one message
    /// never stops the others; only a database that cannot be reached stops the import.
    fn ingest_import_part(
        &self,
        organisation: &OrganisationCode,
        operator: &Operator,
        part: &[(&Reading, &[u8])],
    ) -> AppResult<Vec<Ingested>> {
        let now = self.now();
        let ingested = match self
            .store
            .write(|tx| ingest_import_batch(tx, &mut FeedCache::default(), organisation, operator, part, now))
        {
            Ok(ingested) => ingested,
            Err(error) if stops_the_import(&error) => return Err(error),
            Err(error) if part.len() > 1 => {
                tracing::warn!(%error, messages = part.len(), "an import batch failed; applying it one message at a time");
                let mut outcomes = Vec::with_capacity(part.len());
                for one in part {
                    outcomes.extend(self.ingest_import_part(organisation, operator, std::slice::from_ref(one))?);
                }
                return Ok(outcomes);
            }
            Err(error) => {
                let (reading, raw) = part[0];
                vec![self.hold_unapplied(organisation, reading, raw, &error.to_string())?]
            }
        };
        self.store.note_growth(ingested.len() as u64);
        Ok(ingested)
    }

    /// Stores a message whose own transaction failed, held with the reason, so that the
    /// data-quality staff see it and can reprocess it. If even that cannot be written, the
    /// outcome says so (an `AE`, nothing stored) and the import goes on.
    fn hold_unapplied(
        &self,
        organisation: &OrganisationCode,
        reading: &Reading,
        raw: &[u8],
        reason: &str,
    ) -> AppResult<Ingested> {
        let now = self.now();
        let held = self.store.write(|tx| {
            let id = FeedCache::default().organisation_id(tx, organisation)?;
            store_unapplied(tx, id, reading, raw, reason, now)
        });
        match held {
            Ok(ingested) => Ok(ingested),
            Err(error) if stops_the_import(&error) => Err(error),
            Err(error) => Ok(self.not_committed(raw, &error, "internal error: the message could not be stored")),
        }
    }

    /// Reads each message and what orders it (see the module's documentation), in one read
    /// transaction: the identifiers and emails all the messages name looked up together.
    fn read_with_keys(&self, organisation: &OrganisationCode, raw: &[&[u8]]) -> AppResult<Vec<(Reading, Vec<String>)>> {
        let readings: Vec<Reading> = raw.iter().map(|bytes| Reading::of(bytes)).collect();
        let records = self.store.read(|tx| {
            let mut cache = FeedCache::default();
            let id = cache.organisation_id(tx, organisation)?;
            let facts = cache.facts(tx, id)?;
            let is_local = |authority: &str| facts.is_local_authority(authority);
            let named: Vec<Named> =
                readings.iter().map(|reading| Named::in_message(reading.parsed.message.as_ref(), &is_local)).collect();
            let numbers: Vec<&NhsNumber> = named.iter().flat_map(|n| &n.nhs_numbers).collect();
            let identifiers: Vec<&LocalIdentifier> = named.iter().flat_map(|n| &n.local_identifiers).collect();
            let emails: Vec<&EmailAddress> = named.iter().flat_map(|n| &n.emails).collect();
            let by_number = tx.records_by_nhs_number(&numbers)?;
            let by_identifier = tx.records_by_local_identifier(id, &identifiers)?;
            let by_email = tx.records_by_email(&emails)?;
            Ok::<_, AppError>(
                named
                    .iter()
                    .map(|n| {
                        let found = n
                            .nhs_numbers
                            .iter()
                            .filter_map(|number| by_number.get(number.as_str()))
                            .chain(n.local_identifiers.iter().filter_map(|identifier| {
                                by_identifier.get(&(identifier.authority().to_owned(), identifier.value().to_owned()))
                            }))
                            .chain(n.emails.iter().filter_map(|email| by_email.get(email.as_str())));
                        let mut ids: Vec<PatientId> =
                            found.flat_map(|record| [record.id, record.merged_into.unwrap_or(record.id)]).collect();
                        ids.sort();
                        ids.dedup();
                        ids
                    })
                    .collect::<Vec<Vec<PatientId>>>(),
            )
        })?;
        Ok(readings
            .into_iter()
            .zip(records)
            .map(|(reading, records)| {
                let keys = ordering_keys(&reading, &records);
                (reading, keys)
            })
            .collect())
    }
}

/// The identifiers and emails a message names in PID-3, MRG-1 and PID-13, as the feed reads
/// them (the records they lead to order the message).
#[derive(Default)]
struct Named {
    nhs_numbers: Vec<NhsNumber>,
    local_identifiers: Vec<LocalIdentifier>,
    emails: Vec<EmailAddress>,
}

impl Named {
    fn in_message(message: Option<&Message>, is_local_authority: &dyn Fn(&str) -> bool) -> Self {
        let mut named = Named::default();
        let Some(message) = message else { return named };
        for (segment, field) in [("PID", 3), ("MRG", 1)] {
            // A list the feed would refuse names nothing here; the message changes no record.
            let Ok((_, identity, email)) = read_identifier_list(message, segment, field, is_local_authority) else {
                continue;
            };
            named.nhs_numbers.extend(identity.nhs_number);
            named.local_identifiers.extend(identity.local_identifiers);
            named.emails.extend(email);
        }
        named.emails.extend(pid13_emails(message).iter().filter_map(|email| EmailAddress::parse(email).ok()));
        named
    }
}

/// Whether an import cannot go on: the database cannot be reached.
fn stops_the_import(error: &AppError) -> bool {
    is_unavailable(error)
}

/// Runs each task on its own thread; their results in order, or the first error.
fn in_parallel<T: Send>(tasks: Vec<impl FnOnce() -> AppResult<T> + Send>) -> AppResult<Vec<T>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = tasks.into_iter().map(|task| scope.spawn(task)).collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// Messages (by index) joined into groups wherever two share a key; each group in order,
/// the groups in the order of their first message.
fn independent_groups<'k>(keys: impl Iterator<Item = &'k [String]>) -> Vec<Vec<usize>> {
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut parent: Vec<usize> = Vec::new();
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, message_keys) in keys.enumerate() {
        parent.push(i);
        for key in message_keys {
            match first.get(key.as_str()) {
                Some(&other) => {
                    let (a, b) = (root(&mut parent, i), root(&mut parent, other));
                    // The earlier message stays the root, so groups keep a stable order.
                    parent[a.max(b)] = a.min(b);
                }
                None => {
                    first.insert(key, i);
                }
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of_root: HashMap<usize, usize> = HashMap::new();
    for i in 0..parent.len() {
        let r = root(&mut parent, i);
        let group = *group_of_root.entry(r).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[group].push(i);
    }
    groups
}

/// Deals groups out to `workers` (largest first, each to the least loaded); each worker's
/// messages in file order.
fn share_out(mut groups: Vec<Vec<usize>>, workers: usize) -> Vec<Vec<usize>> {
    groups.sort_by_key(|group| std::cmp::Reverse(group.len()));
    let mut shares: Vec<Vec<usize>> = vec![Vec::new(); workers];
    for group in groups {
        let least = (0..workers).min_by_key(|&w| shares[w].len()).unwrap_or(0);
        shares[least].extend(group);
    }
    for share in &mut shares {
        share.sort_unstable();
    }
    shares.retain(|share| !share.is_empty());
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter().map(|keys| keys.iter().map(|k| (*k).to_owned()).collect()).collect()
    }

    #[test]
    fn messages_sharing_a_key_even_through_others_form_one_group_in_order() {
        let keys = keys(&[&["a"], &["b"], &["c", "a"], &["d"], &["b", "c"], &[], &["d"]]);
        let groups = independent_groups(keys.iter().map(Vec::as_slice));
        assert_eq!(groups, vec![vec![0, 1, 2, 4], vec![3, 6], vec![5]]);
    }

    #[test]
    fn groups_are_dealt_out_whole_and_each_share_is_in_file_order() {
        let shares = share_out(vec![vec![0, 1, 2, 4], vec![3, 6], vec![5], vec![7]], 2);
        assert_eq!(shares, vec![vec![0, 1, 2, 4], vec![3, 5, 6, 7]]);
        assert_eq!(share_out(vec![vec![0], vec![1]], 4), vec![vec![0], vec![1]]);
    }
}
