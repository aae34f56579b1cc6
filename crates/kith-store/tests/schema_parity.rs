//! The two migration trees (`migrations/sqlite`, `migrations/postgres`) must build the same
//! schema: the same tables, the same columns with the same nullability and corresponding
//! types, the same primary keys and the same indexes. Each engine's schema is read from its
//! own catalogue after migrating a fresh database, described in engine-neutral terms, and
//! the two descriptions are compared.
//!
//! Types are compared through SQLite's storage classes, since one SQLite type stands for
//! several PostgreSQL ones (see [`POSTGRES_TYPES`]). What is compared of an index: its
//! table, its key columns in order with their direction, whether it is unique and its
//! `WHERE` predicate (normalised: no parentheses, casts, quotes, spaces or case). An index
//! created by name is matched by name; one an engine made for a `UNIQUE` constraint has an
//! engine-specific name (`sqlite_autoindex_…`, `…_key`) and is matched by its shape alone.
//! Not compared (yet): `CHECK` constraints, defaults, foreign keys, triggers.
//!
//! Under `CI=true` the PostgreSQL half cannot be skipped: [`TestDatabase::postgres`] fails
//! the test when `KITH_TEST_POSTGRES_URL` is not set.

use std::collections::{BTreeMap, BTreeSet};

use kith_store::DatabaseUrl;
use kith_test_support::TestDatabase;

/// PostgreSQL's `information_schema.columns.data_type` → the SQLite storage class the same
/// column has in the SQLite tree. Identifiers are `UUID` in PostgreSQL and 16-byte `BLOB`s in
/// SQLite; hashes and certificate fingerprints `BYTEA`/`BLOB`; booleans and small numbers
/// (`BOOLEAN`, `SMALLINT`, `INTEGER`) are `INTEGER` in SQLite (0/1 for booleans, with a
/// `CHECK`); instants are `BIGINT` microseconds, `INTEGER` in SQLite. A PostgreSQL type not in
/// this list fails the test until its SQLite counterpart is written down here.
const POSTGRES_TYPES: &[(&str, &str)] = &[
    ("bigint", "INTEGER"),
    ("integer", "INTEGER"),
    ("smallint", "INTEGER"),
    ("boolean", "INTEGER"),
    ("text", "TEXT"),
    ("character varying", "TEXT"),
    ("uuid", "BLOB"),
    ("bytea", "BLOB"),
    ("double precision", "REAL"),
    ("real", "REAL"),
];

/// Differences between the two trees that are known and accepted, each with the reason.
/// Every entry is a line of the test's report, verbatim. Empty: the trees agree.
const KNOWN_DRIFT: &[&str] = &[];

/// The SQLite storage class of a declared column type, by SQLite's affinity rules
/// (<https://www.sqlite.org/datatype3.html#determination_of_column_affinity>); the tables are
/// `STRICT`, so the declared type is also what is stored, except in `kith_migrations`
/// (`BIGINT`, shared with PostgreSQL), which the rules give `INTEGER`.
fn sqlite_storage_class(declared: &str) -> String {
    let declared = declared.to_ascii_uppercase();
    let class = if declared.contains("INT") {
        "INTEGER"
    } else if ["CHAR", "CLOB", "TEXT"].iter().any(|text| declared.contains(text)) {
        "TEXT"
    } else if declared.contains("BLOB") || declared.is_empty() {
        "BLOB"
    } else if ["REAL", "FLOA", "DOUB"].iter().any(|real| declared.contains(real)) {
        "REAL"
    } else {
        "NUMERIC"
    };
    class.to_owned()
}

fn postgres_storage_class(data_type: &str) -> String {
    POSTGRES_TYPES.iter().find(|(postgres, _)| *postgres == data_type).map_or_else(
        || format!("unmapped PostgreSQL type {data_type:?} (add it to POSTGRES_TYPES)"),
        |(_, sqlite)| (*sqlite).to_owned(),
    )
}

/// An index predicate without the spelling each engine gives it: PostgreSQL writes
/// `(kind = 'patient_record'::text)` for SQLite's `kind = 'patient_record'`.
fn normalise_predicate(text: &str) -> String {
    let mut normalised = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            // A cast: `::text`, `::character varying`.
            while chars.peek().is_some_and(|next| next.is_ascii_alphanumeric() || *next == '_' || *next == ' ') {
                chars.next();
            }
            continue;
        }
        if c == '(' || c == ')' || c == '"' || c.is_whitespace() {
            continue;
        }
        normalised.extend(c.to_lowercase());
    }
    normalised
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Column {
    storage_class: String,
    not_null: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Index {
    table: String,
    /// `None` for an index an engine made for a `UNIQUE` constraint.
    name: Option<String>,
    /// Key columns in order, `DESC` after a descending one.
    columns: Vec<String>,
    unique: bool,
    predicate: Option<String>,
}

impl Index {
    fn describe(&self) -> String {
        format!(
            "index {} on {} ({}){}{}",
            self.name.as_deref().unwrap_or("(of a UNIQUE constraint)"),
            self.table,
            self.columns.join(", "),
            if self.unique { " UNIQUE" } else { "" },
            self.predicate.as_ref().map(|predicate| format!(" WHERE {predicate}")).unwrap_or_default()
        )
    }
}

/// One engine's schema, in engine-neutral terms.
#[derive(Debug, Default)]
struct Schema {
    /// Table → column → its type and nullability.
    columns: BTreeMap<String, BTreeMap<String, Column>>,
    /// Table → its primary key's columns, in key order.
    primary_keys: BTreeMap<String, Vec<String>>,
    indexes: BTreeSet<Index>,
}

fn sqlite_schema(database: &TestDatabase) -> Schema {
    let DatabaseUrl::Sqlite(path) = &database.url else { panic!("a SQLite database") };
    let connection = kith_store::sqlite::raw_connection(path).expect("the SQLite file opens");
    let query = |sql: &str, parameter: &str| -> Vec<Vec<rusqlite::types::Value>> {
        let mut statement = connection.prepare(sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
        let width = statement.column_count();
        statement
            .query_map([parameter], |row| (0..width).map(|index| row.get(index)).collect())
            .and_then(Iterator::collect)
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    };
    let text = |value: &rusqlite::types::Value| match value {
        rusqlite::types::Value::Text(text) => text.clone(),
        other => panic!("expected text, found {other:?}"),
    };
    let int = |value: &rusqlite::types::Value| match value {
        rusqlite::types::Value::Integer(int) => *int,
        other => panic!("expected an integer, found {other:?}"),
    };

    let mut schema = Schema::default();
    let tables = query(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND ?1 = ?1",
        "",
    );
    for table in tables.iter().map(|row| text(&row[0])) {
        let mut key: Vec<(i64, String)> = Vec::new();
        let columns = schema.columns.entry(table.clone()).or_default();
        for row in query("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)", &table) {
            let (name, declared, not_null, key_position) = (text(&row[0]), text(&row[1]), int(&row[2]), int(&row[3]));
            if key_position > 0 {
                key.push((key_position, name.clone()));
            }
            // A primary-key column counts as NOT NULL: PostgreSQL makes it so, and SQLite's
            // table_info reports only a declared NOT NULL.
            columns.insert(
                name,
                Column { storage_class: sqlite_storage_class(&declared), not_null: not_null == 1 || key_position > 0 },
            );
        }
        key.sort();
        if !key.is_empty() {
            schema.primary_keys.insert(table.clone(), key.into_iter().map(|(_, name)| name).collect());
        }
        for row in query("SELECT name, \"unique\", origin FROM pragma_index_list(?1)", &table) {
            let (name, unique, origin) = (text(&row[0]), int(&row[1]) == 1, text(&row[2]));
            if origin == "pk" {
                continue; // compared as the primary key
            }
            let columns =
                query("SELECT name, \"desc\" FROM pragma_index_xinfo(?1) WHERE key = 1 ORDER BY seqno", &name)
                    .iter()
                    .map(|row| {
                        let column = match &row[0] {
                            rusqlite::types::Value::Text(column) => column.clone(),
                            _ => "(an expression)".to_owned(),
                        };
                        if int(&row[1]) == 1 { format!("{column} DESC") } else { column }
                    })
                    .collect();
            let predicate = if origin == "c" {
                let sql = query("SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?1", &name)
                    .first()
                    .map(|row| text(&row[0]))
                    .unwrap_or_default();
                let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
                sql.to_ascii_lowercase().find(" where ").map(|at| normalise_predicate(&sql[at + 7..]))
            } else {
                None
            };
            schema.indexes.insert(Index {
                table: table.clone(),
                name: (origin == "c").then_some(name),
                columns,
                unique,
                predicate,
            });
        }
    }
    schema
}

fn postgres_schema(database: &TestDatabase) -> Schema {
    let DatabaseUrl::Postgres(url) = &database.url else { panic!("a PostgreSQL database") };
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("the PostgreSQL database answers");
    let mut schema = Schema::default();

    for row in client
        .query(
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_nullable::text
             FROM information_schema.columns c
             JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'",
            &[],
        )
        .expect("the columns")
    {
        let (table, column, data_type, nullable): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        schema
            .columns
            .entry(table)
            .or_default()
            .insert(column, Column { storage_class: postgres_storage_class(&data_type), not_null: nullable == "NO" });
    }

    for row in client
        .query(
            "SELECT t.relname::text, a.attname::text
             FROM pg_constraint con
             JOIN pg_class t ON t.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k (attnum, position) ON true
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             WHERE con.contype = 'p' AND n.nspname = current_schema()
             ORDER BY t.relname, k.position",
            &[],
        )
        .expect("the primary keys")
    {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        schema.primary_keys.entry(table).or_default().push(column);
    }

    for row in client
        .query(
            "SELECT t.relname::text, i.relname::text, ix.indisunique,
                    EXISTS (SELECT 1 FROM pg_constraint con
                            WHERE con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid AND con.contype IN ('u', 'x')),
                    pg_get_indexdef(ix.indexrelid)
             FROM pg_index ix
             JOIN pg_class i ON i.oid = ix.indexrelid
             JOIN pg_class t ON t.oid = ix.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = current_schema() AND NOT ix.indisprimary",
            &[],
        )
        .expect("the indexes")
    {
        let (table, name, unique, of_constraint, definition): (String, String, bool, bool, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        // `CREATE [UNIQUE] INDEX name ON public.table USING btree (a, b DESC) [WHERE (…)]`
        let (head, predicate) = match definition.find(" WHERE ") {
            Some(at) => (&definition[..at], Some(normalise_predicate(&definition[at + 7..]))),
            None => (definition.as_str(), None),
        };
        let key = head.find(" USING ").and_then(|at| head[at..].find('(').map(|open| at + open + 1));
        let columns = match key {
            Some(start) => head[start..head.len() - 1]
                .split(", ")
                .map(|column| column.replace('"', "").split_whitespace().collect::<Vec<_>>().join(" "))
                .collect(),
            None => vec![format!("(unreadable: {definition})")],
        };
        schema.indexes.insert(Index { table, name: (!of_constraint).then_some(name), columns, unique, predicate });
    }
    schema
}

/// Every difference between the two schemas, one line each.
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut found = Vec::new();
    let tables: BTreeSet<&String> = sqlite.columns.keys().chain(postgres.columns.keys()).collect();
    for table in tables {
        let (Some(in_sqlite), Some(in_postgres)) = (sqlite.columns.get(table), postgres.columns.get(table)) else {
            let only = if sqlite.columns.contains_key(table) { "SQLite" } else { "PostgreSQL" };
            found.push(format!("table {table}: only in {only}"));
            continue;
        };
        let columns: BTreeSet<&String> = in_sqlite.keys().chain(in_postgres.keys()).collect();
        for column in columns {
            match (in_sqlite.get(column), in_postgres.get(column)) {
                (Some(left), Some(right)) if left == right => {}
                (left, right) => found.push(format!(
                    "column {table}.{column}: SQLite {}, PostgreSQL {}",
                    describe_column(left),
                    describe_column(right)
                )),
            }
        }
        if sqlite.primary_keys.get(table) != postgres.primary_keys.get(table) {
            found.push(format!(
                "primary key of {table}: SQLite {:?}, PostgreSQL {:?}",
                sqlite.primary_keys.get(table),
                postgres.primary_keys.get(table)
            ));
        }
    }
    for index in sqlite.indexes.difference(&postgres.indexes) {
        found.push(format!("{}: only in SQLite", index.describe()));
    }
    for index in postgres.indexes.difference(&sqlite.indexes) {
        found.push(format!("{}: only in PostgreSQL", index.describe()));
    }
    found
}

fn describe_column(column: Option<&Column>) -> String {
    match column {
        Some(column) => format!("{}{}", column.storage_class, if column.not_null { " NOT NULL" } else { " NULL" }),
        None => "(none)".to_owned(),
    }
}

#[test]
fn sqlite_and_postgresql_migrations_build_the_same_schema() {
    let sqlite_database = TestDatabase::sqlite();
    drop(sqlite_database.store());
    let sqlite = sqlite_schema(&sqlite_database);
    assert!(sqlite.columns.len() > 20, "the SQLite schema was read: {:?}", sqlite.columns.keys());
    assert!(sqlite.indexes.len() > 20, "the SQLite indexes were read: {:?}", sqlite.indexes);

    let Some(postgres_database) = TestDatabase::postgres() else { return };
    drop(postgres_database.store());
    let postgres = postgres_schema(&postgres_database);
    assert!(postgres.columns.len() > 20, "the PostgreSQL schema was read: {:?}", postgres.columns.keys());

    let found = differences(&sqlite, &postgres);
    let unexpected: Vec<&String> = found.iter().filter(|line| !KNOWN_DRIFT.contains(&line.as_str())).collect();
    let stale: Vec<&&str> = KNOWN_DRIFT.iter().filter(|known| !found.iter().any(|line| line == *known)).collect();
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "the migration trees drifted apart:\n{}\n\nallowed drift no longer found (remove it from KNOWN_DRIFT):\n{}",
        unexpected.iter().map(|line| format!("  {line}")).collect::<Vec<_>>().join("\n"),
        stale.iter().map(|line| format!("  {line}")).collect::<Vec<_>>().join("\n"),
    );
}

#[test]
fn types_are_compared_through_sqlite_storage_classes() {
    assert_eq!(sqlite_storage_class("BIGINT"), "INTEGER");
    assert_eq!(sqlite_storage_class("integer"), "INTEGER");
    assert_eq!(sqlite_storage_class("TEXT"), "TEXT");
    assert_eq!(sqlite_storage_class("BLOB"), "BLOB");
    assert_eq!(postgres_storage_class("uuid"), "BLOB");
    assert_eq!(postgres_storage_class("boolean"), "INTEGER");
    assert!(postgres_storage_class("jsonb").starts_with("unmapped"));
    assert_eq!(normalise_predicate("(kind = 'patient_record'::text)"), normalise_predicate("kind = 'patient_record'"));
    assert_eq!(normalise_predicate("(revoked_at IS NULL)"), "revoked_atisnull");
}
