//! The resources file: for each resource, where its records sit in a body,
//! its key, and its typed columns with the checks each value must pass.
//!
//! A file is TOML, one table per resource under `resources`:
//!
//! ```toml
//! [resources.orders]
//! table = "orders"          # default: the resource's name
//! records = "/data"         # a JSON pointer to the array; "" (default): the body
//! format = "json"           # or "jsonl": one record per line
//! key = ["id"]              # one column or several
//! extra = "keep"            # fields no column names go to `_extra jsonb`; default "ignore"
//!
//! [[resources.orders.columns]]
//! name = "id"
//! from = "/id"              # a JSON pointer into the record; default: "/" + name
//! type = "uuid"
//! ```
//!
//! [`Spec::parse`] reads one and checks everything that can be checked
//! without a database, so that a mistake stops a service at start, in one
//! line naming the file, the resource and the field ([`SpecError`]),
//! before any network call. `spec/builtin.toml` is the file that applies
//! when none is given.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use request::{Incremental, RawIncremental, RawRequest, RequestSpec};

pub mod body;
pub mod read;
pub mod request;
#[cfg(test)]
mod tests;

/// The file that applies without `RESOURCES_FILE`: JSONPlaceholder's posts
/// and comments.
pub const BUILT_IN: &str = include_str!("spec/builtin.toml");

/// Where the built-in file is said to come from, in errors.
pub const BUILT_IN_NAME: &str = "the built-in resources file";

/// Columns every resource table has besides its own: each row's lineage and
/// version (`docs/design.md`), and the fields no column names.
pub const RESERVED_COLUMNS: [&str; 4] = ["source_object", "fetched_at", "loaded_at", EXTRA_COLUMN];

/// The `jsonb` column that holds, per row, the fields no column names,
/// when the resource says `extra = "keep"`.
pub const EXTRA_COLUMN: &str = "_extra";

/// The pipeline's own tables.
pub const RESERVED_TABLES: [&str; 3] = [
    "applied_objects",
    "quarantined_records",
    "__diesel_schema_migrations",
];

/// PostgreSQL cuts identifiers longer than this (`NAMEDATALEN - 1` bytes)
/// without a word: two long names could end up as one.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// A checked resources file.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The file's path, or [`BUILT_IN_NAME`].
    pub source: String,
    /// By name.
    pub resources: Vec<ResourceSpec>,
}

/// One resource.
#[derive(Debug, Clone)]
pub struct ResourceSpec {
    pub name: String,
    pub table: String,
    pub records: RecordsAt,
    /// Indexes into `columns`, in the key's order.
    pub key: Vec<usize>,
    /// Fields no column names are kept in `_extra jsonb`.
    pub keep_extra: bool,
    /// In the table's order.
    pub columns: Vec<ColumnSpec>,
    /// How the importer asks for its records.
    pub request: RequestSpec,
    /// Whether runs ask only for what changed since the last one.
    pub incremental: Option<Incremental>,
    /// Fetched once per key of another resource's records.
    pub parent: Option<Parent>,
}

/// The resource whose records' keys a child resource is fetched for
/// (`/posts/{id}/comments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub resource: String,
    /// The parent's column whose values are filled in.
    pub key: String,
    /// Where: the query parameter, or `None` for `{KEY}` in the URL's path.
    pub param: Option<String>,
}

/// Where the records are in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsAt {
    /// A JSON array at this pointer (`""`: the body is the array).
    Json { pointer: String },
    /// JSON Lines: one record per line.
    JsonLines,
}

/// One column.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    pub name: String,
    /// A JSON pointer into the record.
    pub from: String,
    pub kind: ColumnType,
    pub nullable: bool,
    pub checks: Vec<Check>,
    /// A `timestamptz` given as a number: its unit. `None`: RFC 3339 text only.
    pub epoch: Option<Epoch>,
}

/// The unit of an epoch time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    Seconds,
    Milliseconds,
}

/// The types a column can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    BigInt,
    Integer,
    DoublePrecision,
    Numeric,
    Boolean,
    Text,
    /// From RFC 3339 text, or epoch seconds or milliseconds.
    Timestamptz,
    Date,
    Uuid,
    /// Any JSON value, nested objects included.
    Jsonb,
}

impl ColumnType {
    pub const ALL: [Self; 10] = [
        Self::BigInt,
        Self::Integer,
        Self::DoublePrecision,
        Self::Numeric,
        Self::Boolean,
        Self::Text,
        Self::Timestamptz,
        Self::Date,
        Self::Uuid,
        Self::Jsonb,
    ];

    /// As PostgreSQL and the file write it.
    pub fn sql(self) -> &'static str {
        match self {
            Self::BigInt => "bigint",
            Self::Integer => "integer",
            Self::DoublePrecision => "double precision",
            Self::Numeric => "numeric",
            Self::Boolean => "boolean",
            Self::Text => "text",
            Self::Timestamptz => "timestamptz",
            Self::Date => "date",
            Self::Uuid => "uuid",
            Self::Jsonb => "jsonb",
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.sql() == name)
    }

    fn is_number(self) -> bool {
        matches!(
            self,
            Self::BigInt | Self::Integer | Self::DoublePrecision | Self::Numeric
        )
    }

    fn is_whole(self) -> bool {
        matches!(self, Self::BigInt | Self::Integer)
    }

    /// Read as the text sent: a decimal keeps every digit, JSON its form.
    fn keeps_text(self) -> bool {
        matches!(self, Self::Numeric | Self::Jsonb)
    }

    /// The types a key can have: those whose equality is exact and cheap.
    fn can_key(self) -> bool {
        matches!(self, Self::BigInt | Self::Text | Self::Uuid)
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
    }
}

/// A rule a column's value must pass, or its record is quarantined.
#[derive(Debug, Clone)]
pub enum Check {
    Minimum(Bound),
    Maximum(Bound),
    /// In characters, as JSON Schema's `maxLength` counts.
    MaxLength(u64),
    /// In bytes of UTF-8.
    MaxBytes(u64),
    /// Matched anywhere in the text, unless anchored.
    Pattern(regex::Regex),
    Format(Format),
    /// The value is one of these.
    OneOf(Vec<Allowed>),
}

/// A bound of a number: whole bounds stay exact for `bigint`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    Whole(i64),
    Fraction(f64),
}

/// A value `one_of` allows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Allowed {
    Whole(i64),
    Text(String),
}

/// A text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An address as RFC 5322 writes one.
    Email,
    /// An absolute URI.
    Uri,
}

/// A mistake in a resources file: one line naming the file and, where it
/// lies in one, the resource and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {place}{message}")]
pub struct SpecError {
    pub source_name: String,
    /// `resource `x`, column `y`: `, or empty.
    pub place: String,
    pub message: String,
}

impl Spec {
    /// The built-in file.
    pub fn built_in() -> Self {
        Self::parse(BUILT_IN_NAME, BUILT_IN).unwrap_or_else(|e| {
            unreachable!("the built-in resources file is checked by tests: {e}")
        })
    }

    /// The resources a service runs with: the file at `path` (from
    /// `RESOURCES_FILE`), or the built-in one. Read once at start and kept
    /// for as long as the process runs, so that every task and batch can
    /// refer to its resource as `'static`.
    pub fn load(path: Option<&Path>) -> Result<&'static Self, SpecError> {
        match path {
            Some(path) => Ok(Box::leak(Box::new(Self::read(path)?))),
            None => Ok(Self::shared_built_in()),
        }
    }

    /// The built-in file, read once per process.
    pub fn shared_built_in() -> &'static Self {
        static BUILT_IN: std::sync::OnceLock<Spec> = std::sync::OnceLock::new();
        BUILT_IN.get_or_init(Self::built_in)
    }

    /// Reads and checks the file at `path`.
    pub fn read(path: &Path) -> Result<Self, SpecError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            source_name: name.clone(),
            place: String::new(),
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(&name, &text)
    }

    /// Checks a file's text; `source_name` names it in errors.
    pub fn parse(source_name: &str, text: &str) -> Result<Self, SpecError> {
        let fail = |place: String, message: String| SpecError {
            source_name: source_name.to_owned(),
            place,
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start].matches('\n').count() + 1);
            let place = line.map(|l| format!("line {l}: ")).unwrap_or_default();
            // toml's message may run over lines; one is enough.
            fail(place, e.message().lines().next().unwrap_or("").to_owned())
        })?;
        if raw.resources.is_empty() {
            return Err(fail(
                String::new(),
                "no resources: add a [resources.NAME] table".into(),
            ));
        }
        let mut tables: BTreeMap<String, String> = BTreeMap::new();
        let mut resources = Vec::with_capacity(raw.resources.len());
        for (name, raw) in raw.resources {
            let resource = raw
                .check(&name)
                .map_err(|(place, message)| fail(place, message))?;
            if let Some(other) = tables.insert(resource.table.clone(), name.clone()) {
                return Err(fail(
                    format!("resource `{name}`: "),
                    format!(
                        "table `{}` is resource `{other}`'s too: each resource needs a table of its own",
                        resource.table
                    ),
                ));
            }
            resources.push(resource);
        }
        for child in &resources {
            let Some(parent) = &child.parent else {
                continue;
            };
            let here = |m: String| fail(format!("resource `{}`: `parent`: ", child.name), m);
            let Some(of) = resources.iter().find(|r| r.name == parent.resource) else {
                return Err(here(format!(
                    "`resource` `{}` is not in the file",
                    parent.resource
                )));
            };
            if of.name == child.name {
                return Err(here("a resource cannot be its own parent".into()));
            }
            if of.parent.is_some() {
                return Err(here(format!(
                    "`{}` has a parent of its own: one level of children only",
                    of.name
                )));
            }
            match of.columns.iter().find(|c| c.name == parent.key) {
                None => {
                    return Err(here(format!(
                        "`key` `{}` is not among the columns of `{}`",
                        parent.key, of.name
                    )));
                }
                Some(column) if !(column.kind.can_key() || column.kind == ColumnType::Integer) => {
                    return Err(here(format!(
                        "`key` `{}` of `{}` is {}: a key filled into a URL is bigint, integer, text or uuid",
                        parent.key, of.name, column.kind
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(Self {
            source: source_name.to_owned(),
            resources,
        })
    }

    /// The resource called `name`.
    pub fn resource(&self, name: &str) -> Option<&ResourceSpec> {
        self.resources.iter().find(|r| r.name == name)
    }

    /// The names of its resources, for messages: `comments, posts`.
    pub fn names(&self) -> String {
        self.resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl ResourceSpec {
    /// The key's columns.
    pub fn key_columns(&self) -> impl Iterator<Item = &ColumnSpec> {
        self.key.iter().map(|&i| &self.columns[i])
    }
}

// What the file says, before it is checked. Unknown fields are refused:
// a misspelt `nulable = true` must not pass unnoticed.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    resources: BTreeMap<String, RawResource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    table: Option<String>,
    #[serde(default)]
    records: String,
    format: Option<String>,
    key: OneOrMany,
    extra: Option<String>,
    #[serde(default)]
    columns: Vec<RawColumn>,
    request: Option<RawRequest>,
    incremental: Option<RawIncremental>,
    parent: Option<RawParent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParent {
    resource: String,
    key: String,
    param: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: String,
    from: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    nullable: bool,
    minimum: Option<Bound>,
    maximum: Option<Bound>,
    max_length: Option<u64>,
    max_bytes: Option<u64>,
    pattern: Option<String>,
    format: Option<String>,
    one_of: Option<Vec<Allowed>>,
    epoch: Option<String>,
}

/// Where in a resource a mistake is, and what it is.
type Mistake = (String, String);

impl RawResource {
    fn check(self, name: &str) -> Result<ResourceSpec, Mistake> {
        let at = format!("resource `{name}`: ");
        let here = |message: String| (at.clone(), message);
        identifier(name).map_err(|m| here(format!("the name {m}")))?;
        let table = self.table.unwrap_or_else(|| name.to_owned());
        identifier(&table).map_err(|m| here(format!("`table` {m}")))?;
        if RESERVED_TABLES.contains(&table.as_str()) {
            return Err(here(format!("`table`: `{table}` is the pipeline's own")));
        }
        let records = match self.format.as_deref() {
            None | Some("json") => {
                pointer(&self.records).map_err(|m| here(format!("`records` {m}")))?;
                RecordsAt::Json {
                    pointer: self.records,
                }
            }
            Some("jsonl") if self.records.is_empty() => RecordsAt::JsonLines,
            Some("jsonl") => {
                return Err(here(
                    "`records` points into a JSON body: a JSON Lines body has none".into(),
                ));
            }
            Some(other) => {
                return Err(here(format!(
                    "`format` is `{other}`: it is `json` or `jsonl`"
                )));
            }
        };
        let keep_extra = match self.extra.as_deref() {
            None | Some("ignore") => false,
            Some("keep") => true,
            Some(other) => {
                return Err(here(format!(
                    "`extra` is `{other}`: it is `keep` or `ignore`"
                )));
            }
        };
        if self.columns.is_empty() {
            return Err(here("no columns: add [[resources.NAME.columns]]".into()));
        }
        let mut columns = Vec::with_capacity(self.columns.len());
        let mut names = BTreeSet::new();
        for raw in self.columns {
            let column = raw
                .check()
                .map_err(|(place, m)| (format!("{at}{place}"), m))?;
            if !names.insert(column.name.clone()) {
                return Err(here(format!("column `{}` is named twice", column.name)));
            }
            columns.push(column);
        }
        // A jsonb column may keep a nested object whole while columns of
        // its own take fields inside it (`customer`, `customer_tier`); no
        // other type holds fields.
        for outer in &columns {
            for inner in &columns {
                if inner.from.starts_with(&format!("{}/", outer.from))
                    && outer.kind != ColumnType::Jsonb
                {
                    return Err(here(format!(
                        "column `{}` reads {}, inside column `{}`'s {}, which is {}: only a jsonb column holds fields of its own",
                        inner.name, inner.from, outer.name, outer.from, outer.kind
                    )));
                }
            }
        }
        let key_names = match self.key {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        };
        if key_names.is_empty() {
            return Err(here("`key` names no column".into()));
        }
        let mut key = Vec::with_capacity(key_names.len());
        for name in &key_names {
            let Some(i) = columns.iter().position(|c| &c.name == name) else {
                return Err(here(format!(
                    "`key`: `{name}` is not among its columns ({})",
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if key.contains(&i) {
                return Err(here(format!("`key` names `{name}` twice")));
            }
            let column = &columns[i];
            if !column.kind.can_key() {
                return Err(here(format!(
                    "`key`: `{name}` is {}; a key column is bigint, text or uuid",
                    column.kind
                )));
            }
            if column.nullable {
                return Err(here(format!(
                    "`key`: `{name}` is nullable; a key column is required"
                )));
            }
            key.push(i);
        }
        let request = match self.request {
            Some(raw) => raw
                .check()
                .map_err(|(place, m)| (format!("{at}{place}"), m))?,
            None => RequestSpec::default(),
        };
        let incremental = self
            .incremental
            .map(|raw| raw.check(&columns))
            .transpose()
            .map_err(|(place, m)| (format!("{at}{place}"), m))?;
        let parent = match self.parent {
            None => None,
            Some(raw) => {
                let in_path = format!("{{{}}}", raw.key);
                let url = request.url.as_ref().map(|u| u.as_written());
                if raw.param.is_none() && url.is_some_and(|u| !u.contains(&in_path)) {
                    return Err(here(format!(
                        "`parent`: `request.url` has no {in_path} for the parent's `{}`, and no `param` says where else it goes",
                        raw.key
                    )));
                }
                Some(Parent {
                    resource: raw.resource,
                    key: raw.key,
                    param: raw.param,
                })
            }
        };
        Ok(ResourceSpec {
            name: name.to_owned(),
            table,
            records,
            key,
            keep_extra,
            columns,
            request,
            incremental,
            parent,
        })
    }
}

impl RawColumn {
    fn check(self) -> Result<ColumnSpec, Mistake> {
        let at = format!("column `{}`: ", self.name);
        let here = |message: String| (at.clone(), message);
        identifier(&self.name).map_err(|m| (String::new(), format!("a column name {m}")))?;
        if RESERVED_COLUMNS.contains(&self.name.as_str()) {
            return Err(here(format!(
                "the name is one the pipeline keeps for itself ({})",
                RESERVED_COLUMNS.join(", ")
            )));
        }
        let kind = ColumnType::named(&self.kind).ok_or_else(|| {
            here(format!(
                "unknown type `{}`: one of {}",
                self.kind,
                ColumnType::ALL.map(ColumnType::sql).join(", ")
            ))
        })?;
        let from = self
            .from
            .unwrap_or_else(|| format!("/{}", escape(&self.name)));
        pointer(&from).map_err(|m| here(format!("`from` {m}")))?;
        if from.is_empty() {
            return Err(here(
                "`from` is empty: a column takes one field of the record".into(),
            ));
        }
        let epoch = match self.epoch.as_deref() {
            None => None,
            Some(_) if kind != ColumnType::Timestamptz => {
                return Err(here(format!(
                    "`epoch` is for timestamptz columns, not {kind}"
                )));
            }
            Some("seconds") => Some(Epoch::Seconds),
            Some("milliseconds") => Some(Epoch::Milliseconds),
            Some(other) => {
                return Err(here(format!(
                    "`epoch` is `{other}`: it is `seconds` or `milliseconds`"
                )));
            }
        };
        let mut checks = Vec::new();
        let fits = |check: &str, ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(here(format!("`{check}` is for {what} columns, not {kind}")))
            }
        };
        for (check, bound) in [("minimum", self.minimum), ("maximum", self.maximum)] {
            let Some(bound) = bound else { continue };
            fits(check, kind.is_number(), "number")?;
            if kind.is_whole() && matches!(bound, Bound::Fraction(_)) {
                return Err(here(format!(
                    "`{check}` of a {kind} column is a whole number"
                )));
            }
            checks.push(if check == "minimum" {
                Check::Minimum(bound)
            } else {
                Check::Maximum(bound)
            });
        }
        if let (Some(Bound::Whole(min)), Some(Bound::Whole(max))) = (self.minimum, self.maximum)
            && min > max
        {
            return Err(here(format!(
                "`minimum` {min} is more than `maximum` {max}"
            )));
        }
        if let Some(n) = self.max_length {
            fits("max_length", kind == ColumnType::Text, "text")?;
            checks.push(Check::MaxLength(n));
        }
        if let Some(n) = self.max_bytes {
            fits("max_bytes", kind == ColumnType::Text, "text")?;
            checks.push(Check::MaxBytes(n));
        }
        if let Some(pattern) = self.pattern {
            fits("pattern", kind == ColumnType::Text, "text")?;
            let regex = regex::Regex::new(&pattern).map_err(|e| {
                let first = e.to_string();
                let last = first.lines().last().unwrap_or("").trim().to_owned();
                here(format!(
                    "`pattern` {pattern:?} is not a regular expression: {last}"
                ))
            })?;
            checks.push(Check::Pattern(regex));
        }
        if let Some(format) = self.format {
            fits("format", kind == ColumnType::Text, "text")?;
            checks.push(Check::Format(match format.as_str() {
                "email" => Format::Email,
                "uri" => Format::Uri,
                other => {
                    return Err(here(format!(
                        "`format` is `{other}`: it is `email` or `uri`"
                    )));
                }
            }));
        }
        if let Some(allowed) = self.one_of {
            if allowed.is_empty() {
                return Err(here("`one_of` allows nothing".into()));
            }
            let whole = kind.is_whole();
            let text = kind == ColumnType::Text;
            let fit = allowed.iter().all(|a| match a {
                Allowed::Whole(_) => whole,
                Allowed::Text(_) => text,
            });
            if !fit {
                return Err(here(format!(
                    "`one_of` of a {kind} column lists {}",
                    if whole {
                        "whole numbers only"
                    } else if text {
                        "strings only"
                    } else {
                        "nothing: it is for text, bigint and integer columns"
                    }
                )));
            }
            checks.push(Check::OneOf(allowed));
        }
        Ok(ColumnSpec {
            name: self.name,
            from,
            kind,
            nullable: self.nullable,
            checks,
            epoch,
        })
    }
}

/// A name PostgreSQL keeps as written (it is always quoted): not empty, no
/// NUL, at most 63 bytes.
fn identifier(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.contains('\0') {
        return Err(format!("{name:?} contains a NUL character"));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "`{name}` is {} bytes: PostgreSQL keeps {MAX_IDENTIFIER_BYTES}",
            name.len()
        ));
    }
    Ok(())
}

/// A JSON pointer as RFC 6901 writes one: empty, or `/`-separated tokens in
/// which `~` is only ever `~0` or `~1`.
fn pointer(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    if !text.starts_with('/') {
        return Err(format!(
            "{text:?} is not a JSON pointer: it starts with `/` (or is empty)"
        ));
    }
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "{text:?} is not a JSON pointer: `~` is written `~0` and `/` in a name `~1`"
            ));
        }
    }
    Ok(())
}

/// A JSON pointer's tokens, unescaped (`/a~1b/c~0d`: `a/b`, `c~d`).
fn tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer[1..]
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// A name as a JSON pointer token.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}
