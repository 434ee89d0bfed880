//! Crossbar's listing conventions, shared by every listing route: the
//! `page_size`, `start_key` and `paginate=false` query parameters, the
//! `filter_<path>` family (`filter_not_<path>`, `has_key`, ...) and the
//! date ranges (`created_from`, ..., `modified_to`), and the envelope of a page (`page_size`,
//! `start_key`, `next_start_key`, revision `automatic`).
//!
//! A listing's rows come in a fixed order of a key (a callflow's id; a
//! registration's username and contact; a call's start and id, newest
//! first). `start_key` is that key, opaque to clients: URL-safe base64 of
//! its JSON, so a key of several parts survives the trip. A page starts at
//! the first row at or after the key in listing order, so a row that went
//! away between two pages does not break the walk.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::envelope::{ApiError, Success};
use super::kazoo::Filter;

/// Which way a listing's key runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Ascending,
    /// Newest first, for instance.
    Descending,
}

/// What a listing request asks: paging and filters.
#[derive(Debug)]
pub(crate) struct Listing {
    page_size: usize,
    /// `start_key` as the client sent it (decoded once the key type is
    /// known).
    start_key: Option<String>,
    paginate: bool,
    pub filters: Vec<Filter>,
}

impl Listing {
    /// Reads the query: `page_size` (a positive integer, `default_size`
    /// without it), `start_key`, `paginate`, and filters; other parameters
    /// are ignored, as Crossbar does.
    pub fn parse(params: &[(String, String)], default_size: usize) -> Result<Self, ApiError> {
        let mut listing = Self {
            page_size: default_size,
            start_key: None,
            paginate: true,
            filters: Vec::new(),
        };
        for (key, value) in params {
            match key.as_str() {
                "page_size" => {
                    listing.page_size = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        ApiError::InvalidRequest(format!(
                            "page_size must be a positive integer, not {value:?}"
                        ))
                    })?;
                }
                "start_key" => listing.start_key = Some(value.clone()),
                "paginate" => listing.paginate = value != "false",
                _ => listing
                    .filters
                    .extend(Filter::parse(key, value).map_err(ApiError::InvalidRequest)?),
            }
        }
        Ok(listing)
    }

    /// Whether `doc` (a row without private keys) passes every filter.
    pub fn passes(&self, doc: &Value) -> bool {
        self.passes_document(doc, &Map::new())
    }

    /// Whether a document passes every filter: `doc` its public part with
    /// `id`, `private` its `pvt_*` keys (for the date ranges).
    pub fn passes_document(&self, doc: &Value, private: &Map<String, Value>) -> bool {
        self.filters
            .iter()
            .all(|filter| filter.matches(doc, private))
    }

    /// The `start_key` as a key of the listing.
    fn start<K: DeserializeOwned>(&self) -> Result<Option<K>, ApiError> {
        let Some(text) = &self.start_key else {
            return Ok(None);
        };
        URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::InvalidRequest(format!("start_key {text:?} is not one this server gave"))
            })
    }

    /// The answer: one page of `rows` (in `order` of `key`), each shown
    /// with `show`; every row with `paginate=false`.
    pub fn answer<T, K>(
        &self,
        rows: impl IntoIterator<Item = T>,
        key: impl Fn(&T) -> K,
        order: Order,
        show: impl Fn(T) -> Value,
    ) -> Result<Success, ApiError>
    where
        K: Ord + Serialize + DeserializeOwned,
    {
        let mut extra = Map::new();
        let items: Vec<Value> = if self.paginate {
            let start: Option<K> = self.start()?;
            let mut rows = rows.into_iter().filter(|row| {
                start.as_ref().is_none_or(|start| match order {
                    Order::Ascending => key(row) >= *start,
                    Order::Descending => key(row) <= *start,
                })
            });
            let page: Vec<Value> = rows.by_ref().take(self.page_size).map(&show).collect();
            extra.insert("page_size".into(), json!(page.len()));
            if let Some(start) = &self.start_key {
                extra.insert("start_key".into(), json!(start));
            }
            if let Some(next) = rows.next() {
                extra.insert("next_start_key".into(), json!(cursor(&key(&next))));
            }
            page
        } else {
            rows.into_iter().map(show).collect()
        };
        let empty = items.is_empty();
        let mut success = Success::ok(Value::Array(items));
        if !empty {
            success = success.with_revision("automatic".to_owned());
        }
        success.extra = extra;
        Ok(success)
    }
}

/// A key as a `start_key`.
fn cursor<K: Serialize>(key: &K) -> String {
    // A key of strings and integers always serializes.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(query: &[(&str, &str)]) -> Listing {
        let params: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Listing::parse(&params, 2).unwrap()
    }

    /// Walks every page of `rows` and returns them in the order served.
    fn walk(rows: &[(i128, &str)], order: Order) -> Vec<String> {
        let mut seen = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let query: Vec<(&str, &str)> = next.iter().map(|k| ("start_key", k.as_str())).collect();
            let page = listing(&query)
                .answer(
                    rows.iter().copied(),
                    |(t, id)| (*t, (*id).to_owned()),
                    order,
                    |(_, id)| json!(id),
                )
                .unwrap();
            let items = page.data.as_array().unwrap();
            assert!(items.len() <= 2);
            seen.extend(items.iter().map(|i| i.as_str().unwrap().to_owned()));
            match page.extra.get("next_start_key") {
                Some(Value::String(key)) => next = Some(key.clone()),
                _ => return seen,
            }
        }
    }

    #[test]
    fn pages_follow_compound_keys_both_ways() {
        // Times beyond i64 nanoseconds' reach would still round-trip.
        let newest_first = [
            (i128::MAX, "z"),
            (5, "b"),
            (5, "a"),
            (-1, "x"),
            (i128::MIN, "bad"),
        ];
        assert_eq!(
            walk(&newest_first, Order::Descending),
            ["z", "b", "a", "x", "bad"]
        );
        let mut oldest_first = newest_first;
        oldest_first.reverse();
        assert_eq!(
            walk(&oldest_first, Order::Ascending),
            ["bad", "x", "a", "b", "z"]
        );
    }

    #[test]
    fn bad_parameters_are_refused() {
        let params = vec![("page_size".to_owned(), "0".to_owned())];
        assert!(Listing::parse(&params, 2).is_err());
        let bad = listing(&[("start_key", "%%%")]);
        let answer = bad.answer([1], |n| *n, Order::Ascending, |n| json!(n));
        assert!(matches!(answer, Err(ApiError::InvalidRequest(_))));
        // A key of another shape is refused too, not misread.
        let other = URL_SAFE_NO_PAD.encode(br#"["a", "b"]"#);
        let wrong = listing(&[("start_key", &other)]);
        let answer = wrong.answer([1], |n| *n, Order::Ascending, |n| json!(n));
        assert!(matches!(answer, Err(ApiError::InvalidRequest(_))));
    }

    #[test]
    fn paginate_false_answers_everything() {
        let all = listing(&[("paginate", "false")])
            .answer(0..5, |n| *n, Order::Ascending, |n| json!(n))
            .unwrap();
        assert_eq!(all.data, json!([0, 1, 2, 3, 4]));
        assert!(all.extra.is_empty());
        let none = listing(&[])
            .answer(0..0, |n| *n, Order::Ascending, |n| json!(n))
            .unwrap();
        assert_eq!(none.revision, None, "an empty list has no revision");
    }
}
