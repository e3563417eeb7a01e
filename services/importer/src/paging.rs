//! Where the next page is, for each kind of pagination a resources file
//! can name ([`Pagination`]): from the page just fetched (its records, its
//! headers, values in its body) to the URL of the next one, or the end.
//!
//! Pure: the walk that fetches and archives is in `import`; this only
//! tells it where to go, so that each kind's rules can be tested alone.

use pipeline_core::spec::request::{Ends, Pagination, ValueAt};
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::collections::HashSet;
use url::Url;

use crate::fetch::next_link;

/// What of a page its pagination looks at.
pub(crate) struct Seen<'a> {
    pub url: &'a Url,
    pub records: u64,
    pub headers: &'a HeaderMap,
    /// The values at [`Walker::pointers`], in that order.
    pub values: &'a [Option<Value>],
}

/// Walks one resource's pages.
pub(crate) struct Walker {
    pagination: &'static Pagination,
    /// The resource's URL, with the page size if the kind sends one.
    base: Url,
    /// The page number of the page just fetched (kind `page`).
    number: u32,
    /// Records before the page just fetched (kind `offset`), and in all
    /// pages so far.
    offset: u64,
    records: u64,
    /// Cursors sent so far: one that comes twice would loop.
    cursors: HashSet<String>,
}

impl Walker {
    pub fn new(pagination: &'static Pagination, url: &Url) -> Self {
        let base = match pagination {
            Pagination::Page {
                size: Some((param, size)),
                ..
            }
            | Pagination::Cursor {
                size: Some((param, size)),
                ..
            } => with_param(url, param, &size.to_string()),
            Pagination::Offset {
                limit_param, limit, ..
            } => with_param(url, limit_param, &limit.to_string()),
            _ => url.clone(),
        };
        let number = match pagination {
            Pagination::Page { first, .. } => *first,
            _ => 0,
        };
        Self {
            pagination,
            base,
            number,
            offset: 0,
            records: 0,
            cursors: HashSet::new(),
        }
    }

    /// The first page's URL.
    pub fn first(&self) -> Url {
        match self.pagination {
            Pagination::Page { param, first, .. } => {
                with_param(&self.base, param, &first.to_string())
            }
            Pagination::Offset { param, .. } => with_param(&self.base, param, "0"),
            _ => self.base.clone(),
        }
    }

    /// The JSON pointers into a page's body that [`Walker::next`] reads.
    pub fn pointers(&self) -> Vec<String> {
        let at = |value: &ValueAt| match value {
            ValueAt::Body(pointer) => Some(pointer.clone()),
            ValueAt::Header(_) => None,
        };
        match self.pagination {
            Pagination::Page { ends, .. } | Pagination::Offset { ends, .. } => ends
                .total
                .as_ref()
                .and_then(at)
                .into_iter()
                .chain(ends.more.clone())
                .collect(),
            Pagination::Cursor { next, .. } | Pagination::NextUrl { next } => {
                at(next).into_iter().collect()
            }
            Pagination::None | Pagination::Link => Vec::new(),
        }
    }

    /// The next page's URL after `page`, `None` at the end, or why the walk
    /// cannot go on.
    pub fn next(&mut self, page: &Seen<'_>) -> Result<Option<Url>, String> {
        self.records += page.records;
        let mut values = page.values.iter();
        let mut value = |at: &ValueAt| match at {
            ValueAt::Body(_) => values.next().cloned().flatten(),
            ValueAt::Header(name) => page
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| Value::String(v.trim().to_owned())),
        };
        match self.pagination {
            Pagination::None => Ok(None),
            Pagination::Link => Ok(next_link(page.headers, page.url)),
            Pagination::Page { param, ends, .. } => {
                if page.records == 0 || self.ended(ends, &mut value)? {
                    return Ok(None);
                }
                self.number += 1;
                Ok(Some(with_param(
                    &self.base,
                    param,
                    &self.number.to_string(),
                )))
            }
            Pagination::Offset { param, ends, .. } => {
                if page.records == 0 || self.ended(ends, &mut value)? {
                    return Ok(None);
                }
                // By what came, not by what was asked: a server that caps
                // the limit lower would otherwise have records skipped.
                self.offset += page.records;
                Ok(Some(with_param(
                    &self.base,
                    param,
                    &self.offset.to_string(),
                )))
            }
            Pagination::Cursor { param, next, .. } => {
                let Some(cursor) = text(value(next)) else {
                    return Ok(None);
                };
                if !self.cursors.insert(cursor.clone()) {
                    return Err(format!(
                        "{next} named the cursor {cursor:?} a second time: the server's paging does not advance, so the walk stopped there"
                    ));
                }
                Ok(Some(with_param(&self.base, param, &cursor)))
            }
            Pagination::NextUrl { next } => match text(value(next)) {
                None => Ok(None),
                Some(target) => page
                    .url
                    .join(&target)
                    .map(Some)
                    .map_err(|e| format!("{next} is {target:?}, not a URL: {e}")),
            },
        }
    }

    /// Whether the total or `more` says the pages so far are all there are.
    fn ended(
        &self,
        ends: &Ends,
        value: &mut impl FnMut(&ValueAt) -> Option<Value>,
    ) -> Result<bool, String> {
        // A total left out (GitLab drops X-Total past 10,000 records)
        // ends nothing: the empty page will. One that is not a count is a
        // mistake of the file or the API.
        if let Some(at) = &ends.total
            && let Some(given) = value(at).filter(|v| !v.is_null())
        {
            let total = match &given {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
            .ok_or_else(|| {
                format!("{at} holds {given}, not a count of records: it is the total the pagination names")
            })?;
            if self.records >= total {
                return Ok(true);
            }
        }
        if let Some(pointer) = &ends.more {
            let more = value(&ValueAt::Body(pointer.clone()));
            if matches!(more, None | Some(Value::Null | Value::Bool(false))) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A cursor or URL as text: `None` when absent, null, or empty.
fn text(value: Option<Value>) -> Option<String> {
    match value? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `url` with the query parameter `name` set to `value`, in place of any
/// it had; other parameters are kept in their order.
pub(crate) fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut url = url.clone();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_core::spec::Spec;

    /// The pagination of a resources file's one resource.
    fn pagination(table: &str) -> &'static Pagination {
        let text = format!(
            "[resources.r]\nkey = \"id\"\n[[resources.r.columns]]\nname = \"id\"\ntype = \"bigint\"\n[resources.r.request.pagination]\n{table}"
        );
        let spec: &'static Spec = Box::leak(Box::new(Spec::parse("f", &text).unwrap()));
        spec.resources[0].request.pagination.as_ref().unwrap()
    }

    /// A page as the walk sees it: its records, headers and body values.
    type Page<'a> = (u64, &'a [(&'a str, &'a str)], &'a [Option<Value>]);

    /// The URLs a walk asks for, given what each page holds.
    fn walk(table: &str, pages: &[Page<'_>]) -> Vec<String> {
        let mut walker = Walker::new(pagination(table), &Url::parse("http://api/x?q=1").unwrap());
        let mut url = walker.first();
        let mut urls = vec![url.to_string()];
        for (records, headers, values) in pages {
            let mut map = HeaderMap::new();
            for (name, value) in *headers {
                map.insert(
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            let seen = Seen {
                url: &url,
                records: *records,
                headers: &map,
                values,
            };
            match walker.next(&seen) {
                Ok(Some(next)) => {
                    urls.push(next.to_string());
                    url = next;
                }
                Ok(None) => return urls,
                Err(e) => {
                    urls.push(format!("error: {e}"));
                    return urls;
                }
            }
        }
        urls
    }

    #[test]
    fn numbered_pages_end_at_an_empty_page_the_total_or_no_more() {
        let pages = "kind = \"page\"\nsize_param = \"per_page\"\nsize = 2";
        assert_eq!(
            walk(pages, &[(2, &[], &[]), (2, &[], &[]), (0, &[], &[])]),
            [
                "http://api/x?q=1&per_page=2&page=1",
                "http://api/x?q=1&per_page=2&page=2",
                "http://api/x?q=1&per_page=2&page=3"
            ]
        );
        let by_total = format!("{pages}\ntotal_header = \"X-Total\"");
        let total: &[(&str, &str)] = &[("x-total", "3")];
        assert_eq!(
            walk(&by_total, &[(2, total, &[]), (1, total, &[])]).len(),
            2
        );
        let by_more = format!("{pages}\nmore = \"/has_more\"\nfirst = 0");
        let urls = walk(
            &by_more,
            &[
                (2, &[], &[Some(Value::Bool(true))]),
                (2, &[], &[Some(Value::Bool(false))]),
            ],
        );
        assert_eq!(urls.len(), 2);
        assert!(urls[0].ends_with("page=0"), "{urls:?}");
        let bad_total = format!("{pages}\ntotal = \"/meta/total\"");
        let urls = walk(&bad_total, &[(2, &[], &[Some(Value::from("many"))])]);
        assert!(
            urls[1].contains("the body's /meta/total holds \"many\", not a count"),
            "{urls:?}"
        );
        // A total left out: on to the empty page.
        let urls = walk(&by_total, &[(2, &[], &[]), (2, &[], &[]), (0, &[], &[])]);
        assert_eq!(urls.len(), 3, "{urls:?}");
    }

    #[test]
    fn offsets_move_by_the_records_that_came() {
        let offsets = "kind = \"offset\"\nlimit = 10\ntotal = \"/total\"";
        let total = |n: u64| vec![Some(Value::from(n))];
        let urls = walk(
            offsets,
            &[
                (10, &[], &total(25)),
                (8, &[], &total(25)),
                (7, &[], &total(25)),
            ],
        );
        assert_eq!(
            urls,
            [
                "http://api/x?q=1&limit=10&offset=0",
                "http://api/x?q=1&limit=10&offset=10",
                "http://api/x?q=1&limit=10&offset=18"
            ]
        );
    }

    #[test]
    fn cursors_are_sent_back_until_none_and_never_twice() {
        let from_body = "kind = \"cursor\"\nparam = \"after\"\nnext = \"/next\"";
        let cursor = |c: Value| vec![Some(c)];
        let urls = walk(
            from_body,
            &[
                (5, &[], &cursor("a".into())),
                (0, &[], &cursor("b".into())),
                (5, &[], &cursor(Value::Null)),
            ],
        );
        assert_eq!(
            urls,
            [
                "http://api/x?q=1",
                "http://api/x?q=1&after=a",
                "http://api/x?q=1&after=b"
            ]
        );
        let urls = walk(
            from_body,
            &[(5, &[], &cursor("a".into())), (5, &[], &cursor("a".into()))],
        );
        assert!(
            urls[2].starts_with("error: the body's /next named the cursor \"a\" a second time"),
            "{urls:?}"
        );
        let from_header = "kind = \"cursor\"\nparam = \"c\"\nnext_header = \"X-Next\"";
        let urls = walk(from_header, &[(5, &[("x-next", "z9")], &[]), (5, &[], &[])]);
        assert_eq!(urls, ["http://api/x?q=1", "http://api/x?q=1&c=z9"]);
    }

    #[test]
    fn next_urls_resolve_against_the_page_and_links_are_followed() {
        let next = "kind = \"next_url\"\nnext = \"/links/next\"";
        let urls = walk(
            next,
            &[
                (5, &[], &[Some("/x?page=2".into())]),
                (5, &[], &[Some("".into())]),
            ],
        );
        assert_eq!(urls, ["http://api/x?q=1", "http://api/x?page=2"]);
        let link: &[(&str, &str)] = &[("link", "<http://api/x?p=2>; rel=\"next\"")];
        assert_eq!(
            walk("kind = \"link\"", &[(5, link, &[]), (5, &[], &[])]).len(),
            2
        );
        assert_eq!(walk("kind = \"none\"", &[(5, link, &[])]).len(), 1);
    }
}
