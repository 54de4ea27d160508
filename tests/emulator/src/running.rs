//! A started emulator ([`Running`]): its address, its world and network for
//! tests and the sandbox, and how it stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::server::{self, Shared};
use crate::{control, faults, network};

/// A started emulator; stops when dropped.
pub struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    pub(crate) acceptor: Option<JoinHandle<()>>,
}

impl Running {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks until the emulator stops (it never does on its own).
    pub fn wait(&mut self) {
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }

    /// Stops serving and waits (up to 2 s) for open connections to close;
    /// in the network mode, deletes every namespace it created.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// A handle that stops the emulator from another thread (`wait` then returns).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: Arc::clone(&self.shared),
            addr: self.addr,
        }
    }

    /// The network mode's report (as `GET /_emulator/network`), once the
    /// kernel matches the API; `None` without the network mode.
    pub fn network(&self) -> Option<Value> {
        network::sync(&self.shared);
        self.shared.network.as_ref().map(|n| n.report())
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        server::wake(self.addr);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.shared.live.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(n) = &self.shared.network {
            n.shutdown();
        }
    }

    /// Moves the clock forward (and applies what becomes due).
    pub fn advance(&self, seconds: f64) {
        {
            let mut w = self.shared.lock();
            w.clock.advance(seconds);
            let now = w.now();
            w.settle(now);
        }
        network::sync(&self.shared);
    }

    /// Freezes (`true`) or unfreezes the clock.
    pub fn set_manual_clock(&self, manual: bool) {
        self.shared.lock().clock.set_manual(manual);
    }

    /// Seconds on the emulator clock.
    pub fn now(&self) -> f64 {
        self.shared.lock().now()
    }

    pub fn set_speed(&self, speed: f64) {
        if speed.is_finite() && speed >= 0.0 {
            self.shared.lock().speed = speed;
        }
    }

    /// Adds a fault rule (same JSON as `POST /_emulator/faults`); returns it.
    pub fn add_fault(&self, rule: &Value) -> Result<Value, Value> {
        let mut w = self.shared.lock();
        let id = w.new_id();
        match faults::Rule::parse(rule, id) {
            Ok(r) => {
                let v = r.json();
                w.faults.push(r);
                Ok(v)
            }
            Err(e) => Err(e.body.unwrap_or(Value::Null)),
        }
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// The call log (same objects as `GET /_emulator/calls`).
    pub fn calls(&self) -> Vec<Value> {
        self.shared.lock().calls.iter().map(faults::Call::json).collect()
    }

    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Every resource (same object as `GET /_emulator/state`).
    pub fn state(&self) -> Value {
        let mut w = self.shared.lock();
        let now = w.now();
        w.settle(now);
        control::state(&w)
    }

    /// Declares a project (default VPCs in every region).
    pub fn register_project(&self, project_id: &str) {
        self.shared.lock().register_project(&project_id.to_ascii_lowercase());
    }

    /// Forgets every resource, fault and call (and, in the network mode,
    /// builds the network again from scratch).
    pub fn reset(&self) {
        self.shared.lock().reset();
        if let Some(n) = &self.shared.network {
            n.bump_epoch();
        }
        network::sync(&self.shared);
    }
}

/// Stops a running emulator from another thread.
#[derive(Clone)]
pub struct Stopper {
    pub(crate) shared: Arc<Shared>,
    pub(crate) addr: SocketAddr,
}

impl Stopper {
    /// Makes the acceptor end: [`Running::wait`] returns.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        server::wake(self.addr);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.acceptor.is_some() {
            self.shutdown();
        }
    }
}
