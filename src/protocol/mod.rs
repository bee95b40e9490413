//! Git's wire protocol (v0), as both a fetch and a push speak it: pkt-lines, the ref
//! advertisement, the negotiation's answer, side-band, report-status, and the check of a pack
//! as it streams past.
//!
//! The parsers are strict: a line this module does not know is an error that quotes it
//! (escaped), never a silent "the remote said nothing", since a push whose report we misread
//! could call a refused ref mirrored. Everything a remote sends is bounded.

pub(crate) mod advertisement;
pub(crate) mod negotiation;
pub(crate) mod pack;
pub(crate) mod pktline;
pub(crate) mod report_status;
pub(crate) mod side_band;

#[cfg(test)]
mod properties;
#[cfg(test)]
pub(crate) mod testing;
