use clap::Parser;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    // One TLS backend (ring) for every client in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = synchub::cli::Cli::parse();
    match synchub::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
