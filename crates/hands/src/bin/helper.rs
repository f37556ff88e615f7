//! The sandbox helper as its own binary, for the hands crate's tests. `agentd sandbox-helper`
//! runs the same code from the one agentd binary.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(launch) = agentd_hands::launch::requested(&args) {
        eprintln!(
            "agentd-sandbox-helper: {}",
            agentd_hands::launch::exec(launch)
        );
        return std::process::ExitCode::FAILURE;
    }
    let cfg = match agentd_hands::helper::Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agentd-sandbox-helper: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentd-sandbox-helper: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(agentd_hands::helper::run(cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentd-sandbox-helper: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
