//! Scaleway API client (being built).
