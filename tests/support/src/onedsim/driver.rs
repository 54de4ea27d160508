//! Running drivers as oned does: `<dir>/<driver>/<action> <argument>`, the
//! base64 document on stdin, stdout the answer, stderr the error.

use std::path::Path;
use std::process::Command;

use opennebula::template::{Template, Value};
use opennebula::{process, xml};

use super::{Shared, lock};

/// One driver run, as the stand-in made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverRun {
    /// `<driver>/<action>`, e.g. `scaleway/register_address_range`.
    pub action: String,
    /// The argument: the request id (IPAM) or the network id (VNM).
    pub argument: String,
    /// The XML document sent (base64-encoded) on stdin.
    pub message: String,
    /// The exit code; `None` if it could not run or was killed.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl DriverRun {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The error oned reports for a failed run: the stderr lines that are
    /// not log lines (`ERROR:`, `WARN:`, `INFO:`, `DEBUG:`), joined with
    /// spaces; `-` when there are none.
    pub fn error(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !["ERROR:", "WARN:", "INFO:", "DEBUG:"].iter().any(|p| l.starts_with(p)))
            .collect();
        if lines.is_empty() { "-".into() } else { lines.join(" ") }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Runs `<dir>/<driver>/<action> <argument>` with `message` (base64) on
/// stdin and records the run. `dir` `None`: oned has no such driver.
pub(crate) fn run(
    shared: &Shared,
    dir: Option<&Path>,
    driver: &str,
    action: &str,
    argument: &str,
    message: &str,
) -> DriverRun {
    let mut ran = DriverRun {
        action: format!("{driver}/{action}"),
        argument: argument.to_owned(),
        message: message.to_owned(),
        code: None,
        stdout: String::new(),
        stderr: String::new(),
    };
    match dir {
        Some(dir) if valid_name(driver) => execute(shared, &dir.join(driver).join(action), &mut ran),
        _ => ran.stderr = format!("Driver '{driver}' not available"),
    }
    lock(&shared.runs).push(ran.clone());
    ran
}

fn execute(shared: &Shared, program: &Path, ran: &mut DriverRun) {
    let mut command = Command::new(program);
    command
        .arg(&ran.argument)
        .env_remove("ONE_SCALEWAY_LOG")
        // No real Scaleway credentials reach a test by accident.
        .env("SCW_CONFIG_PATH", "/nonexistent/one-scaleway-tests/config.yaml")
        .env_remove("SCW_SECRET_KEY")
        .env_remove("SCW_ACCESS_KEY")
        .env_remove("SCW_PROFILE")
        .env_remove("SCW_API_URL")
        .env_remove("SCW_DEFAULT_PROJECT_ID")
        .env_remove("SCW_DEFAULT_ZONE")
        .env("ONE_XMLRPC", &shared.url)
        .envs(shared.config.driver_env.iter().map(|(k, v)| (k, v)));
    let input = opennebula::base64::encode(ran.message.as_bytes());
    match process::run(&mut command, input.as_bytes(), shared.config.driver_timeout) {
        Ok(out) => {
            ran.code = out.status.code();
            ran.stdout = out.stdout_text();
            ran.stderr = out.stderr_text();
        }
        Err(process::Failure::TimedOut { stdout, stderr, .. }) => {
            ran.stdout = String::from_utf8_lossy(&stdout).into_owned();
            ran.stderr = String::from_utf8_lossy(&stderr).into_owned();
            let action = ran.action.rsplit('/').next().unwrap_or_default().to_owned();
            ran.stderr.push_str(&format!("\nTimeout executing {action}\n"));
        }
        // As oned words a driver it cannot start.
        Err(process::Failure::Spawn(e)) => ran.stderr = format!("{}: {e}", program.display()),
        Err(e) => ran.stderr = format!("{}: {e}", program.display()),
    }
}

/// The vector attribute `name` of a driver's answer, in template syntax or
/// XML (oned's `parse_str_or_xml`).
pub(crate) fn answer_vector(stdout: &str, name: &str) -> Result<Vec<(String, String)>, String> {
    let text = stdout.trim();
    if text.starts_with('<') {
        let root = xml::parse(text.as_bytes()).map_err(|e| format!("Error parsing driver response: {e}"))?;
        let vector = if root.name == name {
            Some(&root)
        } else {
            root.child(name)
        };
        return vector
            .map(|v| v.children.iter().map(|c| (c.name.clone(), c.text.clone())).collect())
            .ok_or_else(|| format!("{name} not found in IPAM driver response"));
    }
    let t = Template::parse(text).map_err(|e| format!("Error parsing driver response: {e}"))?;
    t.attributes
        .into_iter()
        .find_map(|(n, v)| match v {
            Value::Vector(pairs) if n.eq_ignore_ascii_case(name) => Some(pairs),
            _ => None,
        })
        .ok_or_else(|| format!("{name} not found in IPAM driver response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_is_the_non_log_lines() {
        let mut ran = DriverRun {
            action: "x/register_address_range".into(),
            argument: "1".into(),
            message: String::new(),
            code: Some(1),
            stdout: String::new(),
            stderr: "INFO: x: starting\nERROR: x: no flexible IP\nno flexible IP left\n".into(),
        };
        assert_eq!(ran.error(), "no flexible IP left");
        ran.stderr = "ERROR: only a log line\n".into();
        assert_eq!(ran.error(), "-");
    }

    #[test]
    fn answers_in_both_syntaxes() {
        assert_eq!(
            answer_vector("AR = [\n  IP = \"10.0.0.2\",\n  SIZE = \"1\"\n]\n", "AR").unwrap(),
            vec![("IP".to_owned(), "10.0.0.2".to_owned()), ("SIZE".into(), "1".into())]
        );
        assert_eq!(
            answer_vector("<TEMPLATE><AR><IP>10.0.0.2</IP></AR></TEMPLATE>", "AR").unwrap(),
            vec![("IP".to_owned(), "10.0.0.2".to_owned())]
        );
        assert_eq!(
            answer_vector("ADDRESS = [ IP = \"1.2.3.4\" ]", "AR").unwrap_err(),
            "AR not found in IPAM driver response"
        );
    }
}
