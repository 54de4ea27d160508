//! HTTP and XML-RPC: one call per connection in, oned's answer out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use opennebula::xml::{self, Element, Limits};

/// A parameter after the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Str(String),
    Int(i64),
    Bool(bool),
    /// Any other XML-RPC type (double, array, struct...), as its text.
    Other(String),
}

impl Arg {
    /// The parameter as the calls log shows it.
    pub fn text(&self) -> String {
        match self {
            Self::Str(s) | Self::Other(s) => s.clone(),
            Self::Int(i) => i.to_string(),
            Self::Bool(b) => u8::from(*b).to_string(),
        }
    }
}

/// A method call.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    pub session: Option<String>,
    pub args: Vec<Arg>,
}

/// oned's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `[true, string, 0]`: an `*.info` body.
    Str(String),
    /// `[true, i4, 0]`: an object id.
    Int(i64),
    /// `[false, message, code, object id, replication index]`.
    Fail { message: String, code: i32, id: i64 },
    /// An XML-RPC fault (xmlrpc-c's, for unknown methods and bad parameters).
    Fault { code: i32, message: String },
}

/// oned's error codes (`Request::ErrorCode`).
pub(crate) const AUTHENTICATION: i32 = 0x0100;
pub(crate) const NO_EXISTS: i32 = 0x0400;
pub(crate) const ACTION: i32 = 0x0800;
pub(crate) const INTERNAL: i32 = 0x2000;

/// xmlrpc-c's fault codes.
pub(crate) const FAULT_TYPE: i32 = -501;
pub(crate) const FAULT_NO_SUCH_METHOD: i32 = -506;

const LIMITS: Limits = Limits {
    depth: 64,
    elements: 1_000_000,
    text: 64 << 20,
};

/// The text of an XML-RPC `<value>`: its typed child, or its own text (a string).
fn arg(value: &Element) -> Arg {
    let Some(typed) = value.children.first() else {
        return Arg::Str(value.text.clone());
    };
    let text = typed.text.trim();
    match typed.name.as_str() {
        "string" => Arg::Str(typed.text.clone()),
        "i4" | "int" | "i8" => text.parse().map_or_else(|_| Arg::Other(typed.text.clone()), Arg::Int),
        "boolean" => match text {
            "1" | "true" => Arg::Bool(true),
            "0" | "false" => Arg::Bool(false),
            _ => Arg::Other(typed.text.clone()),
        },
        _ => Arg::Other(typed.to_xml()),
    }
}

/// Parses a `methodCall`.
pub(crate) fn parse_call(body: &[u8]) -> Result<Request, String> {
    let root = xml::parse_with(body, LIMITS).map_err(|e| format!("not an XML-RPC call: {e}"))?;
    if root.name != "methodCall" {
        return Err(format!("<{}> is not an XML-RPC call", root.name));
    }
    let method = root
        .child("methodName")
        .map(|m| m.text.trim().to_owned())
        .ok_or("a call without <methodName>")?;
    let mut values = root
        .child("params")
        .map(|p| {
            p.children_named("param")
                .filter_map(|param| param.child("value"))
                .map(arg)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter();
    let session = values.next().map(|s| s.text());
    Ok(Request {
        method,
        session,
        args: values.collect(),
    })
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
    out
}

/// The `methodResponse` of an answer, as xmlrpc-c writes it for oned.
pub(crate) fn render(answer: &Answer) -> String {
    let head = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n";
    let values = |vs: &[String]| {
        let inner: String = vs.iter().map(|v| format!("<value>{v}</value>\r\n")).collect();
        format!(
            "{head}<params>\r\n<param><value><array><data>\r\n{inner}</data></array></value></param>\r\n</params>\r\n</methodResponse>\r\n"
        )
    };
    match answer {
        Answer::Str(s) => values(&[
            "<boolean>1</boolean>".into(),
            format!("<string>{}</string>", escape(s)),
            "<i4>0</i4>".into(),
        ]),
        Answer::Int(i) => values(&[
            "<boolean>1</boolean>".into(),
            format!("<i4>{i}</i4>"),
            "<i4>0</i4>".into(),
        ]),
        Answer::Fail { message, code, id } => values(&[
            "<boolean>0</boolean>".into(),
            format!("<string>{}</string>", escape(message)),
            format!("<i4>{code}</i4>"),
            format!("<i4>{id}</i4>"),
            "<i8>0</i8>".into(),
        ]),
        Answer::Fault { code, message } => format!(
            "{head}<fault>\r\n<value><struct>\r\n<member><name>faultCode</name>\r\n<value><i4>{code}</i4></value></member>\r\n\
             <member><name>faultString</name>\r\n<value><string>{}</string></value></member>\r\n\
             </struct></value>\r\n</fault>\r\n</methodResponse>\r\n",
            escape(message)
        ),
    }
}

/// Reads one HTTP request: its method and body.
fn read_request(stream: &TcpStream) -> Result<(String, Vec<u8>), String> {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader
        .read_line(&mut first)
        .map_err(|e| format!("cannot read the request: {e}"))?;
    let verb = first.split_whitespace().next().unwrap_or("").to_owned();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the headers: {e}"))?;
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(|_| "a bad Content-Length".to_owned())?;
        }
    }
    if length > LIMITS.text {
        return Err(format!("a request of {length} bytes"));
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("cannot read the body: {e}"))?;
    Ok((verb, body))
}

fn write_response(mut stream: &TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// Serves one connection: one call, one answer.
pub(crate) fn serve(stream: &TcpStream, handle: impl FnOnce(&Request) -> Answer) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let (verb, body) = match read_request(stream) {
        Ok(r) => r,
        Err(e) => return write_response(stream, "400 Bad Request", &e),
    };
    if verb != "POST" {
        return write_response(stream, "405 Method Not Allowed", "XML-RPC takes POST");
    }
    let answer = match parse_call(&body) {
        Ok(request) => handle(&request),
        Err(e) => Answer::Fault {
            code: -503,
            message: format!("Call XML not a proper XML-RPC call. {e}"),
        },
    };
    write_response(stream, "200 OK", &render(&answer));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_parameter() {
        let body = b"<?xml version=\"1.0\"?>\n<methodCall>\n  <methodName>one.vn.rm_ar</methodName>\n  <params>\n\
            <param><value><string>oneadmin:x</string></value></param>\n\
            <param><value><i4>5</i4></value></param>\n<param><value><int>-1</int></value></param>\n\
            <param><value><boolean>1</boolean></value></param>\n<param><value>AR = [ TYPE = \"IP4\" ]</value></param>\n\
            <param><value><string/></value></param>\n<param><value><double>1.5</double></value></param>\n\
            </params></methodCall>";
        let r = parse_call(body).unwrap();
        assert_eq!(r.method, "one.vn.rm_ar");
        assert_eq!(r.session.as_deref(), Some("oneadmin:x"));
        assert_eq!(
            r.args,
            vec![
                Arg::Int(5),
                Arg::Int(-1),
                Arg::Bool(true),
                Arg::Str("AR = [ TYPE = \"IP4\" ]".into()),
                Arg::Str(String::new()),
                Arg::Other("<double>1.5</double>".into()),
            ]
        );
    }

    #[test]
    fn answers_read_back_with_our_client_parser() {
        let ok = render(&Answer::Str("<VNET><NAME>a&b</NAME></VNET>".into()));
        assert_eq!(
            opennebula::oned::parse_response(ok.as_bytes()).unwrap(),
            "<VNET><NAME>a&b</NAME></VNET>"
        );
        let id = render(&Answer::Int(100));
        assert_eq!(opennebula::oned::parse_response(id.as_bytes()).unwrap(), "100");
        let fail = render(&Answer::Fail {
            message: "[one.vn.info] Error getting virtual network [7].".into(),
            code: NO_EXISTS,
            id: 7,
        });
        assert_eq!(
            opennebula::oned::parse_response(fail.as_bytes()).unwrap_err(),
            "[one.vn.info] Error getting virtual network [7]. (error code 1024)"
        );
        let fault = render(&Answer::Fault {
            code: FAULT_NO_SUCH_METHOD,
            message: "Method 'one.x' not defined".into(),
        });
        assert_eq!(
            opennebula::oned::parse_response(fault.as_bytes()).unwrap_err(),
            "fault: Method 'one.x' not defined"
        );
    }
}
