//! What every way to a Git service offers (`Connection`): a handshake that ends in the
//! service's ref advertisement, and a request whose answer is read as a stream.

use std::io::{Read, Write};

use anyhow::Result;

use super::remote::{End, Remote};
use crate::base::transfer::TransferStats;
use crate::protocol::advertisement::Advertisement;

/// The Git services this tool asks a server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }
}

/// What hands a request's body out, piece by piece, to the function it is given.
pub(crate) type Produce<'b> =
    &'b mut dyn FnMut(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<TransferStats>;

/// A request's body: whole (a fetch's wants and haves), or made as it is sent (a push's pack).
pub(crate) enum Body<'b> {
    Whole(&'b [u8]),
    Made(Produce<'b>),
}

/// A remote's Git services, however they are reached.
pub(crate) trait Connection {
    /// Open `service` and read the ref advertisement it opens with. A stateful connection stays
    /// open for the next `request`.
    fn handshake(&mut self, service: Service) -> Result<Advertisement>;

    /// Send a request to `service` and return what its body's maker said of it and the
    /// answer's stream. Over a stateful connection the request goes on the one the handshake
    /// opened (a new one, its advertisement skipped, when none is open); over HTTP it is a POST.
    fn request<'s>(
        &'s mut self,
        service: Service,
        body: Body<'_>,
    ) -> Result<(TransferStats, Box<dyn Read + 's>)>;

    /// End a connection whose advertisement was read and that was asked nothing.
    fn close(&mut self) {}

    /// The remote as messages name it (no credentials).
    fn url(&self) -> &str;
}

/// Why this tool's own client cannot reach a remote (the caller hands the step to libgit2).
pub(crate) type Declined = String;

/// Write a request's body to a stateful connection, and flush it.
pub(crate) fn write_body(
    conn: &mut dyn std::io::Write,
    body: Body<'_>,
    url: &str,
) -> Result<TransferStats> {
    use anyhow::Context as _;
    let stats = match body {
        Body::Whole(bytes) => {
            conn.write_all(bytes)
                .with_context(|| format!("cannot send the request to {url}"))?;
            TransferStats {
                objects: 0,
                bytes: bytes.len(),
            }
        }
        Body::Made(produce) => produce(&mut |piece| {
            conn.write_all(piece)
                .with_context(|| format!("cannot send the request to {url}"))
        })?,
    };
    conn.flush()
        .with_context(|| format!("cannot send the request to {url}"))?;
    Ok(stats)
}

/// Which end a remote is, as messages name it.
pub(crate) fn peer(remote: &Remote) -> &'static str {
    match remote.end {
        End::Source => "the source",
        End::Target => "the target",
    }
}

/// A way to a service over one stream per conversation (git://, an SSH channel, a local
/// pipe): open it, read the advertisement, then ask on the same stream.
pub(crate) trait Opener {
    type Stream: Read + Write;

    /// A new stream to `service`, its advertisement read.
    fn open(&self, service: Service) -> Result<(Self::Stream, Advertisement)>;

    /// The remote as messages name it.
    fn url(&self) -> &str;

    /// After a request's body went out whole: a receive-pack over TCP is told no more comes.
    fn sent(&self, _stream: &mut Self::Stream, _service: Service) {}
}

/// A `Connection` over an `Opener`: the stream a handshake opened is kept for the next
/// request, and ended with a flush when nothing is asked of it.
pub(crate) struct Stateful<O: Opener> {
    opener: O,
    open: Option<O::Stream>,
}

impl<O: Opener> Stateful<O> {
    pub(crate) fn new(opener: O) -> Stateful<O> {
        Stateful { opener, open: None }
    }
}

impl<O: Opener> Connection for Stateful<O> {
    fn handshake(&mut self, service: Service) -> Result<Advertisement> {
        self.close();
        let (stream, ad) = self.opener.open(service)?;
        self.open = Some(stream);
        Ok(ad)
    }

    fn request<'s>(
        &'s mut self,
        service: Service,
        body: Body<'_>,
    ) -> Result<(TransferStats, Box<dyn Read + 's>)> {
        let mut stream = match self.open.take() {
            Some(stream) => stream,
            None => self.opener.open(service)?.0,
        };
        let stats = write_body(&mut stream, body, self.opener.url())?;
        self.opener.sent(&mut stream, service);
        Ok((stats, Box::new(stream)))
    }

    fn close(&mut self) {
        if let Some(mut stream) = self.open.take() {
            // A flush tells the service there is nothing to ask.
            let _ = stream.write_all(b"0000").and_then(|()| stream.flush());
        }
    }

    fn url(&self) -> &str {
        self.opener.url()
    }
}

impl<O: Opener> Drop for Stateful<O> {
    fn drop(&mut self) {
        self.close();
    }
}
