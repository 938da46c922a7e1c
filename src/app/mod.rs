//! Roles and wiring: CLI flags, the runtime actor that owns an instance, the headless
//! JSON-lines control protocol, and logging set-up.

pub mod actor;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod control;
pub mod doctor;
pub mod headless;
pub mod logging;
pub mod provision;
pub mod runtime;
pub mod scan;
pub mod store_adapter;
