//! The report's JSON read straight into [`Report`] by serde visitors: no `Value` tree, no
//! clones, and every list bounded while it is read, so a small gzip that inflates to a
//! million empty objects is refused at the first one past the cap.

use std::fmt;

use crate::tlsrpt::Untrusted;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{parse_time, text, Report, MAX_LINES, MAX_POLICIES, MAX_REPORT_ID};
use policy::PolicySeed;

mod policy;

/// The whole report (the top-level object).
pub(super) struct TopSeed;

impl<'de> DeserializeSeed<'de> for TopSeed {
    type Value = Report;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Report, D::Error> {
        d.deserialize_map(TopSeed)
    }
}

impl<'de> Visitor<'de> for TopSeed {
    type Value = Report;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the report as a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Report, A::Error> {
        let (mut org, mut contact, mut id, mut range, mut policies) =
            (None, None, None, None, Vec::new());
        while let Some(k) = m.next_key::<Key>()? {
            match k.0.as_str() {
                "organization-name" => org = value(&mut m, &k.0, Str)?,
                "contact-info" => contact = value(&mut m, &k.0, Str)?,
                "report-id" => id = value(&mut m, &k.0, Str)?,
                "date-range" => range = Some(value(&mut m, &k.0, RangeSeed)?),
                "policies" => policies = value(&mut m, &k.0, List(PolicySeed, MAX_POLICIES))?,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        let (start, end) = range.ok_or_else(|| de::Error::custom("no date-range"))?;
        let report_id = id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| de::Error::custom("no report-id"))?;
        if report_id.len() > MAX_REPORT_ID {
            return Err(de::Error::custom(format!(
                "report-id is longer than {MAX_REPORT_ID} bytes"
            )));
        }
        Ok(Report {
            organization: org.unwrap_or_default(),
            contact,
            report_id,
            start,
            end,
            policies,
        })
    }
}

/// A map key, owned (serde_json may not lend it when it holds escapes).
struct Key(String);

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(Key)
    }
}

/// The next value through `seed`, its error prefixed with the key.
fn value<'de, A: MapAccess<'de>, S: DeserializeSeed<'de>>(
    m: &mut A,
    key: &str,
    seed: S,
) -> Result<S::Value, A::Error> {
    m.next_value_seed(seed)
        .map_err(|e| de::Error::custom(within(key, &e)))
}

/// `key` then the inner error's path and message: `policies[0]: summary: …`. serde_json puts
/// the position on each error; only the outermost keeps it.
fn within(key: &str, inner: &dyn fmt::Display) -> String {
    let inner = inner.to_string();
    let inner = match inner.rfind(" at line ") {
        Some(i) => &inner[..i],
        None => &inner,
    };
    let sep = if inner.starts_with('[') { "" } else { ": " };
    format!("{key}{sep}{inner}")
}

/// A string or null (`None`), NUL replaced (see [`text`]).
#[derive(Clone, Copy)]
struct Str;

impl<'de> DeserializeSeed<'de> for Str {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(Str)
    }
}

impl<'de> Visitor<'de> for Str {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(text(s)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A string or an array of at most [`MAX_LINES`] strings; null is `None`.
struct Strings;

impl<'de> DeserializeSeed<'de> for Strings {
    type Value = Option<Vec<String>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(Strings)
    }
}

impl<'de> Visitor<'de> for Strings {
    type Value = Option<Vec<String>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(vec![text(s)]))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Self::Value, A::Error> {
        let lines = List(NonNullStr, MAX_LINES).visit_seq(s)?;
        Ok(Some(lines))
    }
}

/// An element of a string array: null is not a string here.
#[derive(Clone, Copy)]
struct NonNullStr;

impl<'de> DeserializeSeed<'de> for NonNullStr {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        match d.deserialize_any(Str)? {
            Some(s) => Ok(s),
            None => Err(de::Error::custom("an element is not a string")),
        }
    }
}

/// A session count: null is 0 (some reporters leave out zero counts).
struct Count;

impl<'de> DeserializeSeed<'de> for Count {
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(Count)
    }
}

impl<'de> Visitor<'de> for Count {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer")
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        Ok(n)
    }
    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(0)
    }
}

/// An array (null: empty) of at most `.1` elements, each read by `.0`; element errors say
/// their index.
#[derive(Clone, Copy)]
struct List<S>(S, usize);

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for List<S> {
    type Value = Vec<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for List<S> {
    type Value = Vec<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of at most {} elements", self.1)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let i = out.len();
            // Refused at the first element past the cap, before reading the rest.
            if i == self.1 {
                return match s.next_element::<IgnoredAny>()? {
                    None => Ok(out),
                    Some(_) => Err(de::Error::custom(format!(
                        "more than {} elements (the most a report may carry here)",
                        self.1
                    ))),
                };
            }
            match s
                .next_element_seed(self.0)
                .map_err(|e| de::Error::custom(within(&format!("[{i}]"), &e)))?
            {
                Some(v) => out.push(v),
                None => return Ok(out),
            }
        }
    }
}

/// RFC 8460 §4.4 "date-range": (start, end) in unix seconds.
struct RangeSeed;

impl<'de> DeserializeSeed<'de> for RangeSeed {
    type Value = (i64, i64);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(i64, i64), D::Error> {
        d.deserialize_map(RangeSeed)
    }
}

impl<'de> Visitor<'de> for RangeSeed {
    type Value = (i64, i64);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(i64, i64), A::Error> {
        let (mut start, mut end) = (None, None);
        while let Some(k) = m.next_key::<Key>()? {
            let slot = match k.0.as_str() {
                "start-datetime" => &mut start,
                "end-datetime" => &mut end,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let s = value(&mut m, &k.0, Str)?;
            *slot = Some(match s {
                None => None,
                Some(s) => Some(parse_time(s.trim()).ok_or_else(|| {
                    de::Error::custom(format!("{} {:?} is not a date-time", k.0, Untrusted(&s)))
                })?),
            });
        }
        let get = |v: Option<Option<i64>>, key: &str| {
            v.flatten()
                .ok_or_else(|| de::Error::custom(format!("no {key}")))
        };
        Ok((get(start, "start-datetime")?, get(end, "end-datetime")?))
    }
}
