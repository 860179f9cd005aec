//! Entry points for the fuzz targets in `fuzz/`. Each target is one line
//! calling a function here; each function feeds arbitrary bytes to a parser
//! or verifier and must never panic.
mod audit;
mod ekcert;
mod eventlog;
mod ima;
mod snp;
mod token;
mod tpm;

#[allow(unused_imports)] // until every area has fuzz entry points
pub use self::audit::*;
#[allow(unused_imports)] // until every area has fuzz entry points
pub use self::ekcert::*;
#[allow(unused_imports)] // until every area has fuzz entry points
pub use self::eventlog::*;
#[allow(unused_imports)] // until every area has fuzz entry points
pub use self::ima::*;
#[allow(unused_imports)] // until every area has fuzz entry points
pub use self::snp::*;
#[allow(unused_imports)] // until every area has fuzz entry points
pub use self::token::*;
#[allow(unused_imports)] // until every area has fuzz entry points
pub use self::tpm::*;
