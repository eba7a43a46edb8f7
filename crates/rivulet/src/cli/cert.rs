//! `rivulet cert dev`: a local CA, a server certificate for this machine and a client
//! certificate, for trying TLS and mutual TLS. Not for production: the CA key sits next to
//! the certificates, unprotected.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// Arguments of `rivulet cert`.
#[derive(Debug, Args)]
pub struct CertArgs {
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Write ca.pem, server.pem + server-key.pem and client.pem + client-key.pem to a
    /// directory: serve with --tls-cert server.pem --tls-key server-key.pem (and
    /// --tls-client-ca ca.pem for mutual TLS); clients trust ca.pem.
    Dev {
        /// Directory to write to (created if missing).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Names and addresses the server certificate is valid for.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
        hosts: Vec<String>,
    },
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// Runs `rivulet cert`.
pub fn run_cert(args: CertArgs) -> Result<()> {
    let CertCommand::Dev { out, hosts } = args.command;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Rivulet development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).context("signing the CA")?;
    let leaf =
        |names: Vec<String>, common: &str, usage: ExtendedKeyUsagePurpose| -> Result<(String, String)> {
            let key = KeyPair::generate().context("generating a key")?;
            let mut params = CertificateParams::new(names).context("certificate parameters")?;
            params.distinguished_name.push(DnType::CommonName, common);
            params.extended_key_usages = vec![usage];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let cert = params.signed_by(&key, &ca, &ca_key).context("signing")?;
            Ok((cert.pem(), key.serialize_pem()))
        };
    let (server, server_key) = leaf(hosts.clone(), "rivulet", ExtendedKeyUsagePurpose::ServerAuth)?;
    let (client, client_key) = leaf(Vec::new(), "rivulet-client", ExtendedKeyUsagePurpose::ClientAuth)?;
    write(&out, "ca.pem", &ca.pem())?;
    write(&out, "ca-key.pem", &ca_key.serialize_pem())?;
    write(&out, "server.pem", &server)?;
    write(&out, "server-key.pem", &server_key)?;
    write(&out, "client.pem", &client)?;
    write(&out, "client-key.pem", &client_key)?;
    println!(
        "Wrote a development CA, a server certificate for {} and a client certificate to {}",
        hosts.join(", "),
        out.display()
    );
    Ok(())
}
