//! What every resource's records share: how an object's bytes become
//! records, which records are bad, and what a record says about its row.
//!
//! An object is a JSON array of records of one resource. [`parse_records`]
//! separates what can never be loaded (the object is not a JSON array at
//! all) from what is wrong with single records, so that one bad record
//! never stops the good ones: the transformer loads the valid records and
//! quarantines the others. A resource ([`crate::resources`]) says only what
//! a record is ([`Record`]); all of the reading is here, once.

use serde::de::{DeserializeOwned, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::fmt;
use std::marker::PhantomData;

/// A record of a resource: its fields (serde), its rules, its key and the
/// columns of its row.
///
/// Unknown fields are ignored, so an API that adds a field does not stop
/// the pipeline; a missing or mistyped known field makes the record bad.
pub trait Record: DeserializeOwned + Send + Sync + fmt::Debug + 'static {
    /// The resource's name, as messages and object metadata carry it.
    const RESOURCE: &'static str;
    /// Its table and key column.
    const TABLE: Table;

    /// The value of the key column: one row per key.
    fn key(&self) -> i64;

    /// What serde cannot check: ranges, formats, what PostgreSQL `text`
    /// cannot hold. The error names the field, e.g.
    /// ``field `id`: 0 is out of range``; the record is then quarantined.
    fn check(&self) -> Result<(), String>;

    /// The columns of `rows` other than the key and the lineage, in any
    /// order, each named as in the table.
    fn columns<'a>(rows: &[&'a Self]) -> Vec<Column<'a>>;

    /// The number of elements of `body` if it is a JSON array of valid
    /// records, keeping none of them: what the importer checks before it
    /// archives a page. Each element is read as a `Self` and dropped; a
    /// resource may read a view that copies no text instead, with
    /// [`count_valid`] (posts do).
    fn count_if_all_valid(body: &[u8]) -> Option<u64>
    where
        Self: Sized,
    {
        count_valid::<Self>(body, Self::check)
    }
}

/// Where a resource's rows go. Besides its key and the columns of
/// [`Record::columns`], the table has the lineage columns `source_object`,
/// `fetched_at` and `loaded_at` (see the posts migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    /// A `bigint` primary key.
    pub key: &'static str,
}

/// One column of a set of rows, in row order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column<'a> {
    /// As in the table.
    pub name: &'static str,
    pub values: Values<'a>,
}

/// A column's values, by PostgreSQL type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Values<'a> {
    BigInt(Vec<i64>),
    Text(Vec<&'a str>),
}

impl<'a> Column<'a> {
    /// A `bigint` column.
    pub fn big_int<R>(name: &'static str, rows: &[&'a R], value: impl Fn(&'a R) -> i64) -> Self {
        Self {
            name,
            values: Values::BigInt(rows.iter().map(|&row| value(row)).collect()),
        }
    }

    /// A `text` column.
    pub fn text<R>(name: &'static str, rows: &[&'a R], value: impl Fn(&'a R) -> &'a str) -> Self {
        Self {
            name,
            values: Values::Text(rows.iter().map(|&row| value(row)).collect()),
        }
    }
}

impl Values<'_> {
    /// Its PostgreSQL type.
    pub fn sql_type(&self) -> &'static str {
        match self {
            Self::BigInt(_) => "bigint",
            Self::Text(_) => "text",
        }
    }
}

/// Rules that records of several resources share; each names its field.
pub mod rules {
    /// A key or reference: from 1 up.
    pub fn positive(field: &str, value: i64) -> Result<(), String> {
        if value < 1 {
            return Err(format!(
                "field `{field}`: {value} is out of range (1 to {})",
                i64::MAX
            ));
        }
        Ok(())
    }

    /// Text that PostgreSQL can store (no NUL) and at most `limit` bytes.
    pub fn text(field: &str, value: &str, limit: usize) -> Result<(), String> {
        text_measured(field, value.len(), value.contains('\0'), limit)
    }

    /// [`text`] of a text known by its length and whether it holds a NUL.
    pub fn text_measured(field: &str, len: usize, nul: bool, limit: usize) -> Result<(), String> {
        if nul {
            return Err(format!(
                "field `{field}` contains a NUL character, which PostgreSQL text cannot store"
            ));
        }
        if len > limit {
            return Err(format!(
                "field `{field}` is {len} bytes, more than the limit of {limit}"
            ));
        }
        Ok(())
    }
}

/// Why a body is not a JSON array at all. The message says where in the
/// body; nothing in such a body can be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("the body is empty")]
    Empty,
    #[error("{0}")]
    Encoding(String),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// A record that is not valid, kept so it can be fixed and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Position in the array, from 0.
    pub index: usize,
    /// What is wrong, naming the field, e.g. ``field `id`: invalid type``.
    pub reason: String,
    /// The record's JSON text exactly as it appears in the object.
    pub raw: String,
}

/// The records of one object, or of part of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records<R> {
    /// The valid records, in array order.
    pub rows: Vec<R>,
    /// The invalid records, in array order.
    pub bad: Vec<BadRecord>,
}

impl<R> Default for Records<R> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            bad: Vec::new(),
        }
    }
}

impl<R> Records<R> {
    /// Number of elements in the array.
    pub fn total(&self) -> usize {
        self.rows.len() + self.bad.len()
    }
}

impl<R: Record> Records<R> {
    /// The same records, with their type known only to themselves.
    pub fn into_batch(self) -> Batch {
        Batch {
            rows: Box::new(self.rows),
            bad: self.bad,
        }
    }
}

/// Valid records of some resource, as what writes them sees them.
pub trait Rows: Send + Sync + fmt::Debug {
    fn table(&self) -> Table;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The key of row `index`.
    fn key(&self, index: usize) -> i64;
    /// The columns of the rows at `indices`, in that order.
    fn columns(&self, indices: &[usize]) -> Vec<Column<'_>>;
}

impl<R: Record> Rows for Vec<R> {
    fn table(&self) -> Table {
        R::TABLE
    }

    fn len(&self) -> usize {
        <[R]>::len(self)
    }

    fn key(&self, index: usize) -> i64 {
        self[index].key()
    }

    fn columns(&self, indices: &[usize]) -> Vec<Column<'_>> {
        let rows: Vec<&R> = indices.iter().map(|&i| &self[i]).collect();
        R::columns(&rows)
    }
}

/// The records of one object, or of part of one, of any resource.
#[derive(Debug)]
pub struct Batch {
    pub rows: Box<dyn Rows>,
    pub bad: Vec<BadRecord>,
}

impl Batch {
    /// Number of elements of the array it holds.
    pub fn total(&self) -> usize {
        self.rows.len() + self.bad.len()
    }
}

/// Parses a body that must be a JSON array, checking each element as an `R`.
pub fn parse_records<R: Record>(body: &[u8]) -> Result<Records<R>, RecordsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RecordsError::Empty);
    }
    // Fast path, one pass: the whole array as records, each within its
    // rules. Only when that fails is the body read again element by
    // element, to tell the good records from the bad.
    if let Some(text) = as_utf8(body)
        && let Ok(rows) = serde_json::from_str::<Vec<R>>(text)
        && rows.iter().all(|row| row.check().is_ok())
    {
        return Ok(Records {
            rows,
            bad: Vec::new(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let elements = ArraySeed(R::RESOURCE).deserialize(&mut deserializer)?;
    deserializer.end()?;

    let mut records = Records::default();
    for (index, raw) in elements.into_iter().enumerate() {
        match parse_one(raw) {
            Ok(row) => records.rows.push(row),
            Err(reason) => records.bad.push(BadRecord {
                index,
                reason,
                raw: raw.get().to_owned(),
            }),
        }
    }
    Ok(records)
}

/// Reads a JSON array from `reader` one element at a time and hands each to
/// `on_record`, valid or not, so that memory holds one element however
/// large the array. Returns the number of elements.
///
/// `reader` is read to its end (trailing whitespace is allowed, anything
/// else is an error), so a hashing reader sees every byte.
pub fn scan_records<R: Record, F: FnMut(Result<R, BadRecord>)>(
    reader: impl std::io::Read,
    on_record: F,
) -> Result<u64, RecordsError> {
    let mut reader = SeenReader {
        inner: reader,
        seen: false,
    };
    let mut deserializer = serde_json::Deserializer::from_reader(&mut reader);
    let scanned = ScanSeed {
        on_record,
        record: PhantomData,
    }
    .deserialize(&mut deserializer)
    .and_then(|count| {
        deserializer.end()?;
        Ok(count)
    });
    match scanned {
        Err(_) if !reader.seen => Err(RecordsError::Empty),
        other => other.map_err(RecordsError::from),
    }
}

/// Counts the elements of `body` if it is a JSON array of elements that
/// read as a `V` (a record, or a view of one) which `check` accepts, and
/// keeps none of them. `None` when anything is wrong; [`parse_records`]
/// then tells what.
pub fn count_valid<'de, V: Deserialize<'de>>(
    body: &'de [u8],
    check: impl Fn(&V) -> Result<(), String>,
) -> Option<u64> {
    let mut deserializer = serde_json::Deserializer::from_str(as_utf8(body)?);
    let count = CountSeed {
        check,
        view: PhantomData,
    }
    .deserialize(&mut deserializer)
    .ok()?;
    deserializer.end().ok()?;
    Some(count)
}

/// `body` as text, if it is UTF-8, validated in one SIMD pass. Parsing
/// that text skips serde_json's check of each string, which on non-ASCII
/// text was a third of the work: a page of 1,000 posts takes 11.5 M
/// instructions to parse instead of 17.4 M (callgrind). `None` says
/// nothing about where: the slow paths, which read bytes, tell.
fn as_utf8(body: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(body).ok()
}

/// Notes whether anything but whitespace went through, to tell an empty
/// body from a broken one.
pub(crate) struct SeenReader<R> {
    inner: R,
    seen: bool,
}

impl<R> SeenReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self { inner, seen: false }
    }

    /// Whether anything but whitespace went through.
    pub(crate) fn seen(&self) -> bool {
        self.seen
    }
}

impl<R: std::io::Read> std::io::Read for SeenReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.seen {
            self.seen = buf[..n].iter().any(|b| !b.is_ascii_whitespace());
        }
        Ok(n)
    }
}

struct ScanSeed<R, F> {
    on_record: F,
    record: PhantomData<fn() -> R>,
}

impl<'de, R: Record, F: FnMut(Result<R, BadRecord>)> DeserializeSeed<'de> for ScanSeed<R, F> {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, R: Record, F: FnMut(Result<R, BadRecord>)> Visitor<'de> for ScanSeed<R, F> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON array of {}", R::RESOURCE)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut index = 0usize;
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            let record = parse_one(&raw).map_err(|reason| BadRecord {
                index,
                reason,
                raw: raw.get().to_owned(),
            });
            (self.on_record)(record);
            index += 1;
        }
        Ok(index as u64)
    }
}

/// One element as an `R`, or why it is not one.
fn parse_one<R: Record>(raw: &RawValue) -> Result<R, String> {
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let record: R = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde_json appends "at line 1 column N" of the record: noise here.
        let message = strip_position(&inner);
        if path == "." {
            message.to_owned()
        } else {
            format!("field `{path}`: {message}")
        }
    })?;
    record.check()?;
    Ok(record)
}

/// serde_json's message without its "at line 1 column N": noise in a
/// reason about one record.
pub(crate) fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

struct CountSeed<V, F> {
    check: F,
    view: PhantomData<fn() -> V>,
}

impl<'de, V: Deserialize<'de>, F: Fn(&V) -> Result<(), String>> DeserializeSeed<'de>
    for CountSeed<V, F>
{
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, V: Deserialize<'de>, F: Fn(&V) -> Result<(), String>> Visitor<'de> for CountSeed<V, F> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of valid records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut count = 0;
        while let Some(view) = seq.next_element::<V>()? {
            (self.check)(&view).map_err(serde::de::Error::custom)?;
            count += 1;
        }
        Ok(count)
    }
}

/// The top-level array, element by element, each kept as raw JSON text;
/// the resource's name is for the error.
struct ArraySeed(&'static str);

impl<'de> DeserializeSeed<'de> for ArraySeed {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON array of {}", self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(element) = seq.next_element()? {
            elements.push(element);
        }
        Ok(elements)
    }
}
