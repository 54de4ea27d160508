//! Reading arguments: query strings (repeated keys are arrays), JSON bodies
//! (unknown fields ignored, `null` accepted for optionals), and pagination.

use serde_json::{Map, Value, json};

use crate::errors::{Reply, invalid};
use crate::util::is_uuid;

/// Default and maximum `page_size`.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
pub const MAX_PAGE_SIZE: u64 = 100;

/// Decoded query pairs.
#[derive(Debug, Clone, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    /// The last value of `key` (`key[]` also accepted).
    pub fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key || k.strip_suffix("[]") == Some(key))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order (`key=a&key=b`, also `key[]=a`).
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key || k.strip_suffix("[]") == Some(key))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// A non-empty single value.
    pub fn text(&self, key: &str) -> Option<String> {
        self.one(key).filter(|v| !v.is_empty()).map(str::to_string)
    }

    /// A boolean in every form the real API accepts (it is written in Go:
    /// `strconv.ParseBool`).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, Reply> {
        match self.one(key) {
            None | Some("") => Ok(None),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(Some(true)),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(Some(false)),
            Some(other) => Err(invalid(key, "format", &format!("{other:?} is not a boolean"))),
        }
    }

    pub fn uuid(&self, key: &str) -> Result<Option<String>, Reply> {
        match self.text(key) {
            None => Ok(None),
            Some(v) if is_uuid(&v) => Ok(Some(v.to_ascii_lowercase())),
            Some(v) => Err(invalid(key, "format", &format!("{v:?} is not a UUID"))),
        }
    }

    pub fn uuids(&self, key: &str) -> Result<Vec<String>, Reply> {
        self.all(key)
            .into_iter()
            .map(|v| {
                if is_uuid(&v) {
                    Ok(v.to_ascii_lowercase())
                } else {
                    Err(invalid(key, "format", &format!("{v:?} is not a UUID")))
                }
            })
            .collect()
    }

    /// `order_by`, checked against the allowed values.
    pub fn order_by(&self, allowed: &[&str], default: &str) -> Result<String, Reply> {
        match self.text("order_by") {
            None => Ok(default.to_string()),
            Some(o) if allowed.contains(&o.as_str()) => Ok(o),
            Some(o) => Err(invalid(
                "order_by",
                "constraint",
                &format!("{o:?} must be one of {}", allowed.join(", ")),
            )),
        }
    }

    /// `(page, page_size)`: page is 1-based, page_size defaults to 20, max 100.
    pub fn paging(&self) -> Result<(u64, u64), Reply> {
        let page = match self.text("page") {
            None => 1,
            Some(p) => match p.parse::<u64>() {
                Ok(n) if n >= 1 => n,
                Ok(_) => return Err(invalid("page", "constraint", "must be greater than or equal to 1")),
                Err(_) => return Err(invalid("page", "format", &format!("{p:?} is not an integer"))),
            },
        };
        let size = match self.text("page_size") {
            None => DEFAULT_PAGE_SIZE,
            Some(p) => match p.parse::<u64>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                Ok(_) => {
                    return Err(invalid(
                        "page_size",
                        "constraint",
                        &format!("must be between 1 and {MAX_PAGE_SIZE}"),
                    ));
                }
                Err(_) => return Err(invalid("page_size", "format", &format!("{p:?} is not an integer"))),
            },
        };
        Ok((page, size))
    }
}

/// Sorts items by an `order_by` value (`created_at_asc`, `name_desc`, ...),
/// stably, so ties keep creation order.
pub fn sort_items(items: &mut [Value], order_by: &str) {
    let (field, desc) = match order_by.rsplit_once('_') {
        Some((f, "desc")) => (f, true),
        Some((f, _)) => (f, false),
        None => (order_by, false),
    };
    let key = |v: &Value| match v.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    items.sort_by_key(key);
    if desc {
        items.reverse();
        // A plain reverse also reverses ties; that matches the API, which
        // lists the most recently created first among equal timestamps.
    }
}

/// Cuts one page out of `items` and builds `{key: [...], total_count}`.
pub fn page_of(items: Vec<Value>, query: &Query, key: &str, total_delta: i64) -> Result<Reply, Reply> {
    let (page, size) = query.paging()?;
    let total = items.len() as i64;
    let start = ((page - 1) * size) as usize;
    let page_items: Vec<Value> = items.into_iter().skip(start).take(size as usize).collect();
    let mut obj = Map::new();
    obj.insert(key.to_string(), Value::Array(page_items));
    obj.insert("total_count".into(), json!((total + total_delta).max(0)));
    Ok(Reply::ok(Value::Object(obj)))
}

/// Accessors on a JSON body with type checks.
pub struct Body<'a>(pub &'a Value);

impl Body<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        match self.0.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.get(key).is_some()
    }

    pub fn str(&self, key: &str) -> Result<Option<String>, Reply> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(key, "format", "must be a string")),
        }
    }

    pub fn str_max(&self, key: &str, max: usize) -> Result<Option<String>, Reply> {
        let v = self.str(key)?;
        if let Some(s) = &v
            && s.chars().count() > max
        {
            return Err(invalid(key, "constraint", &format!("must be at most {max} characters")));
        }
        Ok(v)
    }

    pub fn required_str(&self, key: &str) -> Result<String, Reply> {
        self.str(key)?
            .ok_or_else(|| invalid(key, "required", "field is required"))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, Reply> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(invalid(key, "format", "must be a boolean")),
        }
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, Reply> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid(key, "format", "must be a non-negative integer")),
        }
    }

    pub fn uuid(&self, key: &str) -> Result<Option<String>, Reply> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) if is_uuid(&s) => Ok(Some(s.to_ascii_lowercase())),
            Some(s) => Err(invalid(key, "format", &format!("{s:?} is not a UUID"))),
        }
    }

    pub fn required_uuid(&self, key: &str) -> Result<String, Reply> {
        self.uuid(key)?
            .ok_or_else(|| invalid(key, "required", "field is required"))
    }

    /// An optional array of strings (`null`, missing and `[]` accepted).
    pub fn strs(&self, key: &str) -> Result<Option<Vec<String>>, Reply> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid(key, "format", "must be strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(invalid(key, "format", "must be an array of strings")),
        }
    }

    pub fn uuids(&self, key: &str) -> Result<Option<Vec<String>>, Reply> {
        match self.strs(key)? {
            None => Ok(None),
            Some(v) => v
                .into_iter()
                .map(|s| {
                    if is_uuid(&s) {
                        Ok(s.to_ascii_lowercase())
                    } else {
                        Err(invalid(key, "format", &format!("{s:?} is not a UUID")))
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    }

    /// A nested object (or `None`).
    pub fn object(&self, key: &str) -> Result<Option<&Value>, Reply> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(_) => Err(invalid(key, "format", "must be an object")),
        }
    }
}

/// Tags filter: true when `wanted` is empty or the item has any of them (OR).
pub fn tags_match(item_tags: &[String], wanted: &[String]) -> bool {
    wanted.is_empty() || wanted.iter().any(|t| item_tags.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Query {
        Query(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn paging_defaults_and_limits() {
        assert_eq!(q(&[]).paging().ok(), Some((1, 20)));
        assert_eq!(q(&[("page", "3"), ("page_size", "100")]).paging().ok(), Some((3, 100)));
        let err = q(&[("page_size", "101")]).paging().err().map(|r| r.status);
        assert_eq!(err, Some(400));
        assert_eq!(q(&[("page", "0")]).paging().err().map(|r| r.status), Some(400));
        assert_eq!(q(&[("page", "x")]).paging().err().map(|r| r.status), Some(400));
    }

    #[test]
    fn repeated_keys() {
        let query = q(&[("tags", "a"), ("tags[]", "b"), ("other", "c")]);
        assert_eq!(query.all("tags"), vec!["a", "b"]);
        assert_eq!(query.one("tags"), Some("b"));
    }

    #[test]
    fn booleans_in_every_form_go_parses() {
        for (v, b) in [
            ("1", true),
            ("t", true),
            ("T", true),
            ("TRUE", true),
            ("true", true),
            ("True", true),
            ("0", false),
            ("f", false),
            ("F", false),
            ("FALSE", false),
            ("false", false),
            ("False", false),
        ] {
            assert_eq!(q(&[("delete_ip", v)]).bool("delete_ip").ok(), Some(Some(b)), "{v}");
        }
        assert_eq!(q(&[]).bool("delete_ip").ok(), Some(None));
        for bad in ["yes", "tRUE", "2", "on"] {
            let status = q(&[("delete_ip", bad)]).bool("delete_ip").err().map(|r| r.status);
            assert_eq!(status, Some(400), "{bad}");
        }
    }

    #[test]
    fn sorting() {
        let mut items = vec![
            json!({"name":"b","created_at":"2"}),
            json!({"name":"a","created_at":"1"}),
        ];
        sort_items(&mut items, "name_asc");
        assert_eq!(items[0]["name"], "a");
        sort_items(&mut items, "created_at_desc");
        assert_eq!(items[0]["created_at"], "2");
    }
}
