//! What the binary's gRPC commands (`publish`, `admin`) share: where the gateway is,
//! the bearer token, and a connected client.

use anyhow::{Context, Result};
use clap::Args;
use pushgate_grpc::pb::pushgate_client::PushgateClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;

/// The gateway's gRPC address and token.
#[derive(Args)]
pub struct GrpcArgs {
    /// The gateway's gRPC address.
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        env = "PUSHGATE_GRPC",
        default_value = "http://127.0.0.1:50051"
    )]
    pub grpc: String,
    /// Bearer token (the gateway's grpc_token).
    #[arg(
        long,
        global = true,
        env = "PUSHGATE_GRPC_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

impl GrpcArgs {
    /// A client connected to `--grpc` (`http://` is assumed without a scheme).
    pub async fn connect(&self) -> Result<PushgateClient<Channel>> {
        let addr = if self.grpc.contains("://") {
            self.grpc.clone()
        } else {
            format!("http://{}", self.grpc)
        };
        let channel = Channel::from_shared(addr.clone())
            .with_context(|| format!("invalid --grpc address {addr:?}"))?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        Ok(PushgateClient::new(channel))
    }

    /// `msg` as a request carrying the bearer token, if any.
    pub fn request<T>(&self, msg: T) -> Result<Request<T>> {
        let mut req = Request::new(msg);
        if let Some(t) = self.token.as_deref().filter(|t| !t.is_empty()) {
            let v: MetadataValue<_> = format!("Bearer {t}")
                .parse()
                .context("the token is not a valid header value")?;
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

/// A gRPC error status as the commands print it.
pub fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}
