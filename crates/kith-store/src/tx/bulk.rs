//! Statements over many rows at once, for the bulk paths (a CSV file of professionals, a
//! backfill, the audit events of a commit): look-ups that take many values per statement
//! and multi-row inserts. The statements are built once per size (their text must be
//! `'static` for the connections' statement caches): a lookup pads its last chunk with
//! empty strings (no address), an insert splits its rows into chunks of 128, 64, …, 1.

use std::sync::OnceLock;

use kith_core::text::EmailAddress;

use super::transaction::Tx;
use crate::error::StoreError;
use crate::value::Param;

/// Addresses looked up per statement.
const LOOKUP_CHUNK: usize = 500;
/// Rows per multi-row insert, largest first; every count of rows is a sum of these.
const INSERT_SIZES: [usize; 8] = [128, 64, 32, 16, 8, 4, 2, 1];

/// `{head} ({placeholders}, …)`: the head followed by `count` copies of `(?, ?, …)`.
fn values_statement(head: &str, columns: usize, count: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    format!("{head} {}", vec![row; count].join(", "))
}

/// The multi-row insert statements of one table, one per size in [`INSERT_SIZES`].
pub(super) fn insert_statements(
    cache: &'static OnceLock<Vec<String>>,
    head: &str,
    columns: usize,
) -> &'static [String] {
    cache.get_or_init(|| INSERT_SIZES.iter().map(|&count| values_statement(head, columns, count)).collect())
}

/// `WITH v (email) AS (VALUES (?), … ×LOOKUP_CHUNK) {query}`, built once.
pub(super) fn lookup_statement(cache: &'static OnceLock<String>, query: &str) -> &'static str {
    cache.get_or_init(|| format!("WITH v (email) AS (VALUES {}) {query}", vec!["(?)"; LOOKUP_CHUNK].join(", ")))
}

/// The emails in chunks of [`LOOKUP_CHUNK`], the last padded with empty strings (which are
/// no one's address), so that every chunk runs the same statement.
pub(super) fn lookup_chunks<'e>(emails: &'e [&'e EmailAddress]) -> impl Iterator<Item = Vec<Param<'e>>> {
    emails.chunks(LOOKUP_CHUNK).map(|chunk| {
        let mut params: Vec<Param<'e>> = chunk.iter().map(|email| Param::Text(email.as_str())).collect();
        params.resize(LOOKUP_CHUNK, Param::Text(""));
        params
    })
}

impl Tx<'_> {
    /// Runs one multi-row insert per chunk of `items` (128, 64, …, 1 rows).
    pub(super) fn insert_in_chunks<'i, T>(
        &mut self,
        statements: &'static [String],
        items: &'i [T],
        params_of: impl Fn(&'i T, &mut Vec<Param<'i>>),
    ) -> Result<(), StoreError> {
        let mut rest = items;
        let mut params = Vec::new();
        while !rest.is_empty() {
            let (index, size) = INSERT_SIZES
                .iter()
                .copied()
                .enumerate()
                .find(|&(_, size)| size <= rest.len())
                .expect("the sizes end with 1");
            let (chunk, after) = rest.split_at(size);
            params.clear();
            for item in chunk {
                params_of(item, &mut params);
            }
            self.conn.execute(statements[index].as_str(), &params)?;
            rest = after;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_have_one_placeholder_per_value() {
        let sql = values_statement("INSERT INTO t (a, b) VALUES", 2, 3);
        assert_eq!(sql, "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?)");
        static CACHE: OnceLock<String> = OnceLock::new();
        let lookup = lookup_statement(&CACHE, "SELECT 1 FROM v");
        assert_eq!(lookup.matches('?').count(), LOOKUP_CHUNK);
        assert!(lookup.starts_with("WITH v (email) AS (VALUES (?), (?), "), "{lookup}");
    }

    #[test]
    fn every_count_of_rows_is_a_sum_of_the_sizes() {
        for total in [1_usize, 2, 3, 127, 128, 129, 255, 1000, 10_001] {
            let mut rest = total;
            let mut statements = 0;
            while rest > 0 {
                let size = INSERT_SIZES.iter().copied().find(|&size| size <= rest).unwrap();
                rest -= size;
                statements += 1;
            }
            assert!(statements <= total / 128 + 7, "{total}: {statements}");
        }
    }

    #[test]
    fn lookups_pad_the_last_chunk() {
        let emails: Vec<EmailAddress> =
            (0..501).map(|n| EmailAddress::parse(&format!("p{n}@example.org")).unwrap()).collect();
        let refs: Vec<&EmailAddress> = emails.iter().collect();
        let chunks: Vec<Vec<Param<'_>>> = lookup_chunks(&refs).collect();
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|chunk| chunk.len() == LOOKUP_CHUNK));
        assert!(matches!(chunks[1][0], Param::Text("p500@example.org")));
        assert!(matches!(chunks[1][499], Param::Text("")));
    }
}
