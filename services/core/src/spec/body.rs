//! Finding a resource's records in a body, as its spec says where they
//! are ([`RecordsAt`]): a JSON array (the body itself, or at a pointer
//! into an envelope such as `{"data": [...], "next": ...}`), or JSON Lines.
//! Whole bodies are read in place; large ones are streamed from a reader,
//! one record at a time, so that memory holds one batch however large the
//! body.
//!
//! What is wrong with the body as a whole (not JSON, nothing at the
//! pointer, not an array there) is a [`RecordsError`]: nothing in it can
//! be loaded. What is wrong with one record makes it a [`BadRecord`], and
//! the records beside it still load.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;
use std::io::BufRead;

use super::read::Columns;
use super::{RecordsAt, ResourceSpec, tokens};
use crate::record::{BadRecord, RecordsError, SeenReader};

#[cfg(test)]
mod tests;

/// The records of a body, or of part of one: the valid ones in columns,
/// the others with their reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecRecords {
    pub columns: Columns,
    pub bad: Vec<BadRecord>,
}

impl SpecRecords {
    fn new(spec: &ResourceSpec) -> Self {
        Self {
            columns: Columns::new(spec),
            bad: Vec::new(),
        }
    }

    /// Records read, valid or not.
    pub fn total(&self) -> usize {
        self.columns.rows() + self.bad.len()
    }

    fn add(&mut self, spec: &ResourceSpec, index: usize, text: &str) {
        if let Err(reason) = self.columns.read(spec, text) {
            self.bad.push(BadRecord {
                index,
                reason,
                raw: text.to_owned(),
            });
        }
    }
}

/// Reads every record of a whole body.
pub fn read_body(spec: &ResourceSpec, body: &[u8]) -> Result<SpecRecords, RecordsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RecordsError::Empty);
    }
    let mut records = SpecRecords::new(spec);
    match &spec.records {
        RecordsAt::Json { pointer } => {
            // Fast path, one pass over text whose UTF-8 is checked at once
            // (SIMD): every record straight into the columns. Only when a
            // record does not fit, or the body is not what the spec says,
            // is it read again, record by record, to tell good from bad.
            if let Ok(text) = simdutf8::basic::from_utf8(body) {
                let mut deserializer = serde_json::Deserializer::from_str(text);
                let direct = AtPointer {
                    tokens: &tokens(pointer),
                    pointer,
                    found: Direct {
                        columns: &mut records.columns,
                        spec,
                    },
                }
                .deserialize(&mut deserializer)
                .and_then(|()| deserializer.end());
                if direct.is_ok() {
                    return Ok(records);
                }
                records = SpecRecords::new(spec);
            }
            let mut deserializer = serde_json::Deserializer::from_slice(body);
            let elements: Vec<&RawValue> = AtPointer {
                tokens: &tokens(pointer),
                pointer,
                found: Borrowed,
            }
            .deserialize(&mut deserializer)?;
            deserializer.end()?;
            for (index, raw) in elements.into_iter().enumerate() {
                records.add(spec, index, raw.get());
            }
        }
        RecordsAt::JsonLines => {
            let text = std::str::from_utf8(body)
                .map_err(|e| RecordsError::Encoding(format!("the body is not UTF-8: {e}")))?;
            for (index, line) in lines(text.lines()).enumerate() {
                records.add(spec, index, line);
            }
        }
    }
    Ok(records)
}

/// Reads the records of a body from `reader`, handing them to `on_batch`
/// whenever `batch_records` have come (valid or bad) and once more at the
/// end. Returns the number of records. `reader` is read to its end, so a
/// hashing reader sees every byte.
pub fn scan_body(
    spec: &ResourceSpec,
    reader: impl std::io::Read,
    batch_records: usize,
    on_batch: &mut dyn FnMut(SpecRecords),
) -> Result<u64, RecordsError> {
    let mut batch = SpecRecords::new(spec);
    let mut index = 0usize;
    let mut each = |text: &str| {
        batch.add(spec, index, text);
        index += 1;
        if batch.total() >= batch_records {
            on_batch(std::mem::replace(&mut batch, SpecRecords::new(spec)));
        }
    };
    match &spec.records {
        RecordsAt::Json { pointer } => {
            let mut reader = SeenReader::new(reader);
            let mut deserializer = serde_json::Deserializer::from_reader(&mut reader);
            let scanned = AtPointer {
                tokens: &tokens(pointer),
                pointer,
                found: Streamed(&mut each),
            }
            .deserialize(&mut deserializer)
            .and_then(|()| deserializer.end());
            match scanned {
                Err(_) if !reader.seen() => return Err(RecordsError::Empty),
                other => other?,
            }
        }
        RecordsAt::JsonLines => {
            let reader = std::io::BufReader::new(reader);
            let mut seen = false;
            for line in reader.lines() {
                let line =
                    line.map_err(|e| RecordsError::Encoding(format!("reading the body: {e}")))?;
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() {
                    continue;
                }
                seen = true;
                each(line);
            }
            if !seen {
                return Err(RecordsError::Empty);
            }
        }
    }
    on_batch(batch);
    Ok(index as u64)
}

/// The non-blank lines of JSON Lines, without a trailing `\r`.
fn lines<'t>(lines: impl Iterator<Item = &'t str>) -> impl Iterator<Item = &'t str> {
    lines
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
}

/// What to do with the array's elements once found.
trait Found<'de> {
    type Value;
    fn elements<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error>;
}

/// Keeps each element's text, borrowed from the body.
struct Borrowed;

impl<'de> Found<'de> for Borrowed {
    type Value = Vec<&'de RawValue>;

    fn elements<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(raw) = seq.next_element::<&RawValue>()? {
            elements.push(raw);
        }
        Ok(elements)
    }
}

/// Reads each element straight into the columns.
struct Direct<'c, 's> {
    columns: &'c mut Columns,
    spec: &'s ResourceSpec,
}

impl<'de> Found<'de> for Direct<'_, '_> {
    type Value = ();

    fn elements<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(super::read::RecordSeed {
                columns: self.columns,
                spec: self.spec,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// Hands each element's text on as it is read.
struct Streamed<'f>(&'f mut dyn FnMut(&str));

impl<'de> Found<'de> for Streamed<'_> {
    type Value = ();

    fn elements<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            (self.0)(raw.get());
        }
        Ok(())
    }
}

/// Walks down `tokens` (object keys) to the array of records.
struct AtPointer<'p, F> {
    tokens: &'p [String],
    /// The whole pointer, for errors.
    pointer: &'p str,
    found: F,
}

impl<'de, F: Found<'de>> DeserializeSeed<'de> for AtPointer<'_, F> {
    type Value = F::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        if self.tokens.is_empty() {
            deserializer.deserialize_seq(self)
        } else {
            deserializer.deserialize_map(self)
        }
    }
}

impl<'de, F: Found<'de>> Visitor<'de> for AtPointer<'_, F> {
    type Value = F::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tokens.is_empty() {
            if self.pointer.is_empty() {
                f.write_str("a JSON array of records")
            } else {
                write!(f, "a JSON array of records at {}", self.pointer)
            }
        } else {
            write!(f, "a JSON object holding the records at {}", self.pointer)
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.found.elements(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (first, rest) = self
            .tokens
            .split_first()
            .unwrap_or_else(|| unreachable!("a map is asked for only with tokens left"));
        let mut found = Some(self.found);
        let pointer = self.pointer;
        let mut value = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == first.as_str()
                && let Some(found) = found.take()
            {
                value = Some(map.next_value_seed(AtPointer {
                    tokens: rest,
                    pointer,
                    found,
                })?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        // Nothing at the pointer is no empty page: an answer of another
        // shape (an error in a 200, a changed API) must not pass for one.
        value.ok_or_else(|| serde::de::Error::custom(format!("the body has nothing at {pointer}")))
    }
}

/// The value at `pointer` in a JSON body, read from `reader` without
/// keeping anything else of it: a pagination field beside the records
/// (`/meta/next_cursor`). `None` if the body has nothing there.
pub fn value_at(
    reader: impl std::io::Read,
    pointer: &str,
) -> serde_json::Result<Option<serde_json::Value>> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let value = Seek {
        tokens: &tokens(pointer),
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Walks down `tokens` (object keys, or array indexes) to one value.
struct Seek<'p> {
    tokens: &'p [String],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Option<serde_json::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        if self.tokens.is_empty() {
            return serde::Deserialize::deserialize(deserializer).map(Some);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (first, rest) = self
            .tokens
            .split_first()
            .unwrap_or_else(|| unreachable!("asked for only with tokens left"));
        let mut value = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if value.is_none() && key == first.as_str() {
                value = map.next_value_seed(Seek { tokens: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (first, rest) = self
            .tokens
            .split_first()
            .unwrap_or_else(|| unreachable!("asked for only with tokens left"));
        let index = first.parse::<usize>().ok();
        let mut value = None;
        let mut at = 0;
        loop {
            if Some(at) == index {
                match seq.next_element_seed(Seek { tokens: rest })? {
                    Some(found) => value = found,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            at += 1;
        }
        Ok(value)
    }

    // A scalar has nothing inside it.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}
