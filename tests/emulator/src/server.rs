//! The listener (a thread per connection) and the request pipeline: control
//! endpoints, authentication, faults, the APIs, the call log.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::errors::{DENIED_AUTHENTICATION, Reply};
use crate::faults::{Call, Kind, pick};
use crate::http::{Conn, ReadError, Request, Response, head_bytes};
use crate::input::Query;
use crate::util::{http_date, is_uuid};
use crate::world::{Ctx, Transition, World};

/// The call log keeps the most recent calls only.
pub const MAX_CALLS: usize = 100_000;

/// State shared by every connection.
pub struct Shared {
    pub world: Mutex<World>,
    pub stop: AtomicBool,
    pub live: AtomicUsize,
    /// The network mode, when on.
    pub network: Option<Arc<crate::network::Network>>,
}

impl Shared {
    /// Locks the world, even if a previous holder panicked.
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How an answer is delivered.
pub enum Delivery {
    Normal(Response),
    /// Close without answering.
    Drop,
    /// Headers and half the body, then close.
    Reset(Response),
}

/// Accepts connections until `shared.stop` is set.
pub fn spawn_acceptor(listener: TcpListener, shared: Arc<Shared>) -> JoinHandle<()> {
    thread::spawn(move || {
        for stream in listener.incoming() {
            if shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let shared = Arc::clone(&shared);
            shared.live.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                serve_connection(stream, &shared);
                shared.live.fetch_sub(1, Ordering::SeqCst);
            });
        }
    })
}

/// Wakes the acceptor so it sees the stop flag.
pub fn wake(addr: SocketAddr) {
    let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(500));
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let Ok(mut conn) = Conn::new(stream) else { return };
    loop {
        let req = match conn.read_request(&shared.stop) {
            Ok(r) => r,
            Err(ReadError::Bad(msg)) => {
                let resp = Reply::with_status(400, json!({ "message": format!("bad request: {msg}") }));
                let _ = write_response(&mut conn.stream, &finish(shared, to_response(&resp)), false);
                break;
            }
            Err(ReadError::TooLarge) => {
                let resp = Reply::with_status(413, json!({"message": "request too large"}));
                let _ = write_response(&mut conn.stream, &finish(shared, to_response(&resp)), false);
                break;
            }
            Err(ReadError::Closed | ReadError::Stop | ReadError::Io(_)) => break,
        };
        let keep_alive = !req.close;
        match handle(shared, &req) {
            Delivery::Normal(resp) => {
                if write_response(&mut conn.stream, &resp, keep_alive).is_err() || !keep_alive {
                    break;
                }
            }
            Delivery::Drop => break,
            Delivery::Reset(resp) => {
                let mut bytes = head_bytes(&resp, false);
                bytes.extend_from_slice(&resp.body[..resp.body.len() / 2]);
                let _ = conn.stream.write_all(&bytes);
                let _ = conn.stream.flush();
                break;
            }
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
}

fn write_response(stream: &mut TcpStream, resp: &Response, keep_alive: bool) -> std::io::Result<()> {
    let mut bytes = head_bytes(resp, keep_alive);
    bytes.extend_from_slice(&resp.body);
    stream.write_all(&bytes)?;
    stream.flush()
}

/// A JSON reply as a response (204 keeps `application/json` and no body (recorded)).
pub fn to_response(reply: &Reply) -> Response {
    match &reply.body {
        Some(v) => Response::json(reply.status, v),
        None => Response::new(reply.status).with_header("Content-Type", "application/json"),
    }
}

/// Adds the headers every answer carries: `Date`, `Server`, `X-Request-Id`.
fn finish(shared: &Shared, mut resp: Response) -> Response {
    let (date, id) = {
        let mut w = shared.lock();
        (http_date(w.start_wall + w.now()), w.new_id())
    };
    resp.headers.push(("Date".into(), date));
    resp.headers.push(("Server".into(), "Scaleway API Emulator".into()));
    if resp.header("x-request-id").is_none() {
        resp.headers.push(("X-Request-Id".into(), id));
    }
    resp
}

fn authorized(w: &World, req: &Request) -> bool {
    match req.header("x-auth-token") {
        None => false,
        Some(token) if w.secret_keys.is_empty() => is_uuid(token),
        Some(token) => w.secret_keys.iter().any(|k| k.eq_ignore_ascii_case(token)),
    }
}

/// Handles one request; in the network mode, the kernel matches what the
/// answer shows before it is sent.
pub fn handle(shared: &Shared, req: &Request) -> Delivery {
    let delivery = handle_request(shared, req);
    crate::network::sync(shared);
    delivery
}

fn handle_request(shared: &Shared, req: &Request) -> Delivery {
    let path = req.path();
    if path == "/_emulator/network" {
        crate::network::sync(shared);
        let reply = match (req.method.as_str(), shared.network.as_ref()) {
            ("GET", Some(net)) => Reply::ok(net.report()),
            (_, Some(_)) => crate::errors::bare(405, "Method Not Allowed"),
            (_, None) => crate::errors::bare(404, "the network mode is off (--network PREFIX)"),
        };
        return Delivery::Normal(finish(shared, to_response(&reply)));
    }
    if path == "/_emulator" || path.starts_with("/_emulator/") {
        return Delivery::Normal(finish(shared, crate::control::handle(shared, req)));
    }
    let request_id;
    let fault = {
        let mut w = shared.lock();
        let now = w.now();
        w.settle(now);
        request_id = w.new_id();
        if !authorized(&w, req) {
            let resp = Response::new(401)
                .with_header("Content-Type", "application/json")
                .with_header("X-Request-Id", &request_id);
            let mut resp = resp;
            resp.body = DENIED_AUTHENTICATION.as_bytes().to_vec();
            log_call(&mut w, req, &path, Some(401), None, &request_id);
            drop(w);
            return Delivery::Normal(finish(shared, resp));
        }
        let mut rng = w.rng.clone();
        let fault = pick(&mut w.faults, &mut rng, &req.method, &path);
        w.rng = rng;
        fault
    };
    if let Some(Kind::Delay { seconds }) = &fault {
        sleep_unless_stopped(shared, *seconds);
    }
    let mut w = shared.lock();
    let now = w.now();
    w.settle(now);
    let mut ctx = Ctx::new(now);
    let fault_name = fault.as_ref().map(Kind::name);
    let delivery = match fault {
        None | Some(Kind::Delay { .. }) => Delivery::Normal(process(&mut w, &mut ctx, req)),
        Some(Kind::RateLimit) => Delivery::Normal(Response::new(429).with_header("X-Envoy-Ratelimited", "true")),
        Some(Kind::RateLimitRetryAfter { seconds }) => Delivery::Normal(
            Response::new(429)
                .with_header("X-Envoy-Ratelimited", "true")
                .with_header("Retry-After", &seconds.to_string()),
        ),
        Some(Kind::InternalError) => Delivery::Normal(to_response(&crate::errors::bare(500, "internal error"))),
        Some(Kind::UpstreamError { status, html }) => {
            let reason = crate::http::reason(status);
            if html {
                let mut r = Response::new(status).with_header("Content-Type", "text/html; charset=utf-8");
                r.body = format!(
                    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
                )
                .into_bytes();
                Delivery::Normal(r)
            } else {
                Delivery::Normal(Response::new(status).with_header("Content-Type", "text/plain"))
            }
        }
        Some(Kind::Unavailable { message }) => Delivery::Normal(to_response(&crate::errors::bare(503, &message))),
        Some(Kind::Drop) => Delivery::Drop,
        Some(Kind::TransientState {
            resource,
            resource_id,
            current_state,
        }) => {
            let (res, id) = resource_of(req);
            let res = resource.unwrap_or(res);
            let state = current_state.unwrap_or_else(|| default_state(&res).to_string());
            let reply = crate::errors::transient(&res, &resource_id.unwrap_or(id), &state);
            Delivery::Normal(to_response(&reply))
        }
        Some(Kind::QuotasExceeded {
            resource,
            quota,
            current,
        }) => {
            let res = resource.unwrap_or_else(|| quota_resource(&w, req));
            let project = body_json(req)
                .get("project_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            Delivery::Normal(to_response(&crate::errors::quotas_exceeded(
                &res,
                quota,
                current,
                project.as_deref(),
            )))
        }
        Some(Kind::PermissionsDenied { resource, action }) => {
            let res = resource.unwrap_or_else(|| resource_of(req).0);
            let action = action.unwrap_or_else(|| if req.method == "GET" { "read" } else { "write" }.into());
            Delivery::Normal(to_response(&crate::errors::permissions_denied(&res, &action)))
        }
        Some(Kind::OutOfStock { accept: false }) => {
            let res = offer_name(&w, req).unwrap_or_else(|| resource_of(req).0);
            Delivery::Normal(to_response(&crate::errors::out_of_stock(&res)))
        }
        Some(Kind::OutOfStock { accept: true }) => {
            ctx.out_of_stock_accept = true;
            Delivery::Normal(process(&mut w, &mut ctx, req))
        }
        Some(Kind::Stuck) => {
            ctx.transition = Some(Transition::Stuck);
            Delivery::Normal(process(&mut w, &mut ctx, req))
        }
        Some(Kind::TransitionError) => {
            ctx.transition = Some(Transition::Error);
            Delivery::Normal(process(&mut w, &mut ctx, req))
        }
        Some(Kind::TransitionLocked) => {
            ctx.transition = Some(Transition::Locked);
            Delivery::Normal(process(&mut w, &mut ctx, req))
        }
        Some(Kind::RecycleFip) => {
            ctx.recycle_fip = true;
            Delivery::Normal(process(&mut w, &mut ctx, req))
        }
        Some(Kind::TotalCountDelta { delta }) => {
            ctx.total_count_delta = delta;
            Delivery::Normal(process(&mut w, &mut ctx, req))
        }
        Some(Kind::EventualConsistency { reads }) => {
            let resp = process(&mut w, &mut ctx, req);
            if (200..300).contains(&resp.status)
                && let Ok(v) = serde_json::from_slice::<Value>(&resp.body)
                && let Some(id) = v.get("id").and_then(Value::as_str)
            {
                w.hidden.insert(id.to_string(), reads);
            }
            Delivery::Normal(resp)
        }
        Some(Kind::CommitThenError { status }) => {
            let _ = process(&mut w, &mut ctx, req);
            let message = if status == 500 {
                "internal error"
            } else {
                crate::http::reason(status)
            };
            Delivery::Normal(to_response(&crate::errors::bare(status, message)))
        }
        Some(Kind::CommitThenDrop) => {
            let _ = process(&mut w, &mut ctx, req);
            Delivery::Drop
        }
        Some(Kind::ResetMidBody) => Delivery::Reset(process(&mut w, &mut ctx, req)),
    };
    let status = match &delivery {
        Delivery::Normal(r) | Delivery::Reset(r) => Some(r.status),
        Delivery::Drop => None,
    };
    log_call(&mut w, req, &path, status, fault_name, &request_id);
    drop(w);
    match delivery {
        Delivery::Normal(r) => Delivery::Normal(finish(shared, r.with_header("X-Request-Id", &request_id))),
        Delivery::Reset(r) => Delivery::Reset(finish(shared, r.with_header("X-Request-Id", &request_id))),
        Delivery::Drop => Delivery::Drop,
    }
}

fn log_call(w: &mut World, req: &Request, path: &str, status: Option<u16>, fault: Option<&'static str>, id: &str) {
    let seq = w.next_seq();
    let at = w.now();
    if w.calls.len() >= MAX_CALLS {
        w.calls.remove(0);
    }
    w.calls.push(Call {
        seq,
        method: req.method.clone(),
        path: path.to_string(),
        query: req.raw_query.clone(),
        status,
        fault,
        at,
        request_id: id.to_string(),
    });
}

fn sleep_unless_stopped(shared: &Shared, seconds: f64) {
    let end = Instant::now() + Duration::from_secs_f64(seconds.max(0.0));
    while Instant::now() < end && !shared.stop.load(Ordering::SeqCst) {
        let left = end.saturating_duration_since(Instant::now());
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

fn body_json(req: &Request) -> Value {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&req.body).unwrap_or(Value::Null)
    }
}

/// Runs the API for a request that no fault stopped.
fn process(w: &mut World, ctx: &mut Ctx, req: &Request) -> Response {
    let body = if req.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(&req.body) {
            Ok(v) => v,
            Err(e) => {
                return to_response(&crate::errors::invalid(
                    "body",
                    "format",
                    &format!("the body is not JSON: {e}"),
                ));
            }
        }
    };
    let query = Query(req.query.clone());
    let segments = req.segments();
    let reply = match crate::router::dispatch(w, ctx, &req.method, &segments, &query, &body) {
        Ok(r) | Err(r) => r,
    };
    to_response(&reply)
}

fn singular(collection: &str) -> String {
    match collection {
        "fips" => "flexible_ip".into(),
        "ssh-keys" => "ssh_key".into(),
        "private-networks" => "private_network".into(),
        "gateway-networks" => "gateway_network".into(),
        "server-private-networks" => "server_private_network".into(),
        other => other.trim_end_matches('s').replace('-', "_"),
    }
}

/// The resource a call is about, for default fault bodies: the last id in
/// the path, or for a create the parent named in the body (a GN create names
/// its gateway (recorded)).
fn resource_of(req: &Request) -> (String, String) {
    let segs = req.segments();
    if let Some(i) = segs.iter().rposition(|s| is_uuid(s))
        && i > 0
    {
        return (singular(&segs[i - 1]), segs[i].clone());
    }
    let body = body_json(req);
    for (key, resource) in [
        ("gateway_id", "gateway"),
        ("server_id", "server"),
        ("private_network_id", "private_network"),
    ] {
        if let Some(id) = body.get(key).and_then(Value::as_str) {
            return (resource.to_string(), id.to_string());
        }
    }
    (segs.last().map(|s| singular(s)).unwrap_or_default(), String::new())
}

fn default_state(resource: &str) -> &'static str {
    match resource {
        "gateway" | "gateway_network" => "configuring",
        "server" => "ordered",
        "server_private_network" => "attaching",
        _ => "updating",
    }
}

fn offer_name(w: &World, req: &Request) -> Option<String> {
    let body = body_json(req);
    let offer = w.catalogue.offer(body.get("offer_id")?.as_str()?)?;
    offer.get("name").and_then(Value::as_str).map(str::to_string)
}

fn quota_resource(w: &World, req: &Request) -> String {
    let body = body_json(req);
    if let Some(q) = body
        .get("offer_id")
        .and_then(Value::as_str)
        .and_then(|id| w.catalogue.offer(id))
        .and_then(|o| o.get("quota_name"))
        .and_then(Value::as_str)
    {
        return q.to_string();
    }
    match req.segments().last().map(String::as_str) {
        Some("fips") => "flexible_ips".into(),
        Some(other) => other.replace('-', "_"),
        None => "unknown".into(),
    }
}
