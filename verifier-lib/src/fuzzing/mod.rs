//! Entry points for the fuzz targets in `fuzz/`. Each target is one line
//! calling a function here; each function feeds arbitrary bytes to a parser
//! or verifier and must never panic.
mod api;
mod audit;
mod ekcert;
mod eventlog;
mod governance;
mod ima;
mod snp;
mod token;
mod tpm;

pub use self::api::*;
pub use self::audit::*;
pub use self::ekcert::*;
pub use self::eventlog::*;
pub use self::governance::*;
pub use self::ima::*;
pub use self::snp::*;
pub use self::token::*;
pub use self::tpm::*;
