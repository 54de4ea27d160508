//! The parameters of a call, read as oned reads them, and its failures.

use super::model::{self, State};
use super::rpc::{Answer, Arg, FAULT_TYPE, INTERNAL, NO_EXISTS};

/// A method's outcome: `Err` carries a failure answer, so `?` works.
pub(crate) type Reply = Result<Answer, Answer>;

/// The parameters after the session, read as oned reads them.
pub(crate) struct Params<'a> {
    pub method: &'a str,
    pub args: &'a [Arg],
}

impl Params<'_> {
    fn missing() -> Answer {
        Answer::Fault {
            code: FAULT_TYPE,
            message: "Not enough parameters".into(),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, Answer> {
        match self.args.get(i) {
            Some(Arg::Int(v)) => Ok(*v),
            Some(_) => Err(Answer::Fault {
                code: FAULT_TYPE,
                message: "Parameter that is supposed to be integer is not".into(),
            }),
            None => Err(Self::missing()),
        }
    }

    pub fn int_or(&self, i: usize, default: i64) -> Result<i64, Answer> {
        if self.args.len() > i { self.int(i) } else { Ok(default) }
    }

    pub fn bool_or(&self, i: usize, default: bool) -> Result<bool, Answer> {
        match self.args.get(i) {
            Some(Arg::Bool(b)) => Ok(*b),
            Some(_) => Err(Answer::Fault {
                code: FAULT_TYPE,
                message: "Parameter that is supposed to be boolean is not".into(),
            }),
            None => Ok(default),
        }
    }

    pub fn str(&self, i: usize) -> Result<&str, Answer> {
        match self.args.get(i) {
            Some(Arg::Str(s)) => Ok(s),
            Some(_) => Err(Answer::Fault {
                code: FAULT_TYPE,
                message: "Parameter that is supposed to be string is not".into(),
            }),
            None => Err(Self::missing()),
        }
    }

    /// `[method] message`.
    pub fn fail(&self, code: i32, message: &str) -> Answer {
        Answer::Fail {
            message: format!("[{}] {message}", self.method),
            code,
            id: -1,
        }
    }

    /// `[method] Error getting <object> [id].`
    pub fn no_exists(&self, object: &str, id: i64) -> Answer {
        Answer::Fail {
            message: format!("[{}] Error getting {object} [{id}].", self.method),
            code: NO_EXISTS,
            id,
        }
    }

    /// The template in parameter `i`, parsed.
    pub fn template(&self, i: usize) -> Result<opennebula::template::Template, Answer> {
        model::parse_template(self.str(i)?).map_err(|e| self.fail(INTERNAL, &e))
    }

    /// `append` of the `*.update` methods (0 replace, 1 merge).
    pub fn append(&self, i: usize) -> Result<bool, Answer> {
        Ok(self.int_or(i, 0)? == 1)
    }

    /// A cluster id parameter: -1 is the default cluster.
    pub fn cluster(&self, state: &State, i: usize) -> Result<i64, Answer> {
        let id = match self.int_or(i, -1)? {
            -1 => 0,
            id => id,
        };
        if state.clusters.contains_key(&id) {
            Ok(id)
        } else {
            Err(self.no_exists("cluster", id))
        }
    }

    /// Whether an object owned by oneadmin passes a pool filter
    /// (filter, start id, end id).
    pub fn in_pool(&self, id: i64) -> Result<bool, Answer> {
        let (filter, start, end) = (self.int_or(0, -2)?, self.int_or(1, -1)?, self.int_or(2, -1)?);
        let owner = matches!(filter, -3..=0);
        let range = start < 0 || (id >= start && (end < 0 || id <= end));
        Ok(owner && range)
    }
}
