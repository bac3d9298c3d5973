//! The NMVS SOAP interface of a national system, as translation only: [`read_request`] reads an
//! envelope that software built for the NMVS v4.0 or v5.0 web services sends, [`translate`]
//! turns what it asks into the requests of the JSON API (which the national system takes and
//! checks the same way, whichever interface they came through), and [`write`](mod@write) makes the answer,
//! or the [`Fault`], such software reads. [`wsdl`] describes each service exactly as served.
//! Nothing here knows HTTP, storage or time: the HTTP crate routes, authenticates and calls the
//! national system.

pub mod fault;
pub mod message;
pub mod read;
pub mod translate;
pub mod write;
pub mod wsdl;

pub use fault::{Fault, FaultCode};
pub use message::{Message, Service, Version};
pub use read::{MixedItem, Product, Request, RequestBody, RequestHeader, read_request};
