//! The values that cross the connection boundary: parameters in, rows out.

use kith_core::ids::*;
use uuid::Uuid;

use crate::error::StoreError;

/// A statement parameter. Each backend maps it to its own column types: a UUID is a 16-byte
/// `BLOB` (its bytes in order) in SQLite and `UUID` in PostgreSQL, a boolean `INTEGER` and
/// `BOOLEAN`.
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bool(bool),
    Uuid(Uuid),
    Bytes(&'a [u8]),
}

impl From<i64> for Param<'_> {
    fn from(value: i64) -> Self {
        Param::Int(value)
    }
}
impl From<bool> for Param<'_> {
    fn from(value: bool) -> Self {
        Param::Bool(value)
    }
}
impl<'a> From<&'a str> for Param<'a> {
    fn from(value: &'a str) -> Self {
        Param::Text(value)
    }
}
impl<'a> From<&'a String> for Param<'a> {
    fn from(value: &'a String) -> Self {
        Param::Text(value)
    }
}
impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(value: &'a [u8]) -> Self {
        Param::Bytes(value)
    }
}
impl From<Uuid> for Param<'_> {
    fn from(value: Uuid) -> Self {
        Param::Uuid(value)
    }
}
impl From<kith_core::Timestamp> for Param<'_> {
    fn from(value: kith_core::Timestamp) -> Self {
        Param::Int(value.as_micros())
    }
}
impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Param::Null, Into::into)
    }
}

macro_rules! id_params {
    ($($id:ty),*) => {$(
        impl From<$id> for Param<'_> {
            fn from(value: $id) -> Self {
                Param::Uuid(value.as_uuid())
            }
        }
    )*};
}
id_params!(
    OrganisationId,
    TeamId,
    AccountId,
    PatientId,
    EntryId,
    BreakGlassId,
    IntegrationId,
    Hl7MessageId,
    ApiTokenId,
    MembershipInvitationId
);

/// A column value read back. SQLite hands a UUID back as its 16 bytes ([`Value::Bytes`]);
/// [`Row::uuid`] reads either form.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
    Uuid(Uuid),
    Bytes(Vec<u8>),
}

/// One result row.
#[derive(Clone, Debug, Default)]
pub struct Row(pub(crate) Vec<Value>);

/// Filling a row in place: backends reuse one row's buffers (its strings and byte vectors)
/// for the next row of the same result, so reading many rows does not allocate for each.
impl Row {
    /// Makes room for `columns` values, keeping what is there for reuse.
    pub(crate) fn resize(&mut self, columns: usize) {
        self.0.resize(columns, Value::Null);
    }

    pub(crate) fn set(&mut self, index: usize, value: Value) {
        self.0[index] = value;
    }

    pub(crate) fn set_text(&mut self, index: usize, text: &str) {
        match &mut self.0[index] {
            Value::Text(buffer) => {
                buffer.clear();
                buffer.push_str(text);
            }
            slot => *slot = Value::Text(text.to_owned()),
        }
    }

    pub(crate) fn set_bytes(&mut self, index: usize, bytes: &[u8]) {
        match &mut self.0[index] {
            Value::Bytes(buffer) => {
                buffer.clear();
                buffer.extend_from_slice(bytes);
            }
            slot => *slot = Value::Bytes(bytes.to_vec()),
        }
    }
}

fn wrong_type(index: usize, wanted: &str, found: &Value) -> StoreError {
    StoreError::corrupt(format!("column {index}: expected {wanted}, found {found:?}"))
}

impl Row {
    fn value(&self, index: usize) -> Result<&Value, StoreError> {
        self.0.get(index).ok_or_else(|| StoreError::corrupt(format!("no column {index}")))
    }

    pub fn is_null(&self, index: usize) -> Result<bool, StoreError> {
        Ok(matches!(self.value(index)?, Value::Null))
    }

    pub fn int(&self, index: usize) -> Result<i64, StoreError> {
        match self.value(index)? {
            Value::Int(value) => Ok(*value),
            other => Err(wrong_type(index, "an integer", other)),
        }
    }

    pub fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        if self.is_null(index)? { Ok(None) } else { self.int(index).map(Some) }
    }

    pub fn text(&self, index: usize) -> Result<&str, StoreError> {
        match self.value(index)? {
            Value::Text(value) => Ok(value),
            other => Err(wrong_type(index, "text", other)),
        }
    }

    pub fn opt_text(&self, index: usize) -> Result<Option<&str>, StoreError> {
        if self.is_null(index)? { Ok(None) } else { self.text(index).map(Some) }
    }

    pub fn bool(&self, index: usize) -> Result<bool, StoreError> {
        match self.value(index)? {
            Value::Bool(value) => Ok(*value),
            Value::Int(value) => Ok(*value != 0),
            other => Err(wrong_type(index, "a boolean", other)),
        }
    }

    pub fn uuid(&self, index: usize) -> Result<Uuid, StoreError> {
        match self.value(index)? {
            Value::Uuid(value) => Ok(*value),
            Value::Bytes(bytes) => {
                Uuid::from_slice(bytes).map_err(|_| wrong_type(index, "a UUID", &Value::Bytes(bytes.clone())))
            }
            Value::Text(text) => {
                Uuid::parse_str(text).map_err(|_| wrong_type(index, "a UUID", &Value::Text(text.clone())))
            }
            other => Err(wrong_type(index, "a UUID", other)),
        }
    }

    pub fn opt_uuid(&self, index: usize) -> Result<Option<Uuid>, StoreError> {
        if self.is_null(index)? { Ok(None) } else { self.uuid(index).map(Some) }
    }

    pub fn bytes(&self, index: usize) -> Result<&[u8], StoreError> {
        match self.value(index)? {
            Value::Bytes(value) => Ok(value),
            other => Err(wrong_type(index, "bytes", other)),
        }
    }

    pub fn opt_bytes(&self, index: usize) -> Result<Option<&[u8]>, StoreError> {
        if self.is_null(index)? { Ok(None) } else { self.bytes(index).map(Some) }
    }

    pub fn timestamp(&self, index: usize) -> Result<kith_core::Timestamp, StoreError> {
        self.int(index).map(kith_core::Timestamp::from_micros)
    }

    pub fn opt_timestamp(&self, index: usize) -> Result<Option<kith_core::Timestamp>, StoreError> {
        self.opt_int(index).map(|micros| micros.map(kith_core::Timestamp::from_micros))
    }
}
