//! Roles and wiring: CLI flags, the runtime actor that owns an instance, the headless
//! JSON-lines control protocol, and logging set-up.

pub mod cli;
pub mod headless;
pub mod logging;
pub mod runtime;
