use clap::Parser;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    synchub::install_crypto_provider();
    let cli = synchub::cli::Cli::parse();
    match synchub::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
