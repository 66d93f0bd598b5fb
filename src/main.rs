use clap::Parser;

// The webhook path allocates per request (headers, body, SQL arguments); mimalloc measured
// faster than glibc malloc here under two-core contention. Built without transparent huge
// pages (`no_thp`): with them, each purge and refault of an arena zeroed 2 MiB, 15 % of
// `bench throughput`'s CPU (the fix mimalloc's maintainer gives in microsoft/mimalloc#1323).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
