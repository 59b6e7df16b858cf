fn main() -> std::process::ExitCode {
    if let Err(e) = color_eyre::install() {
        eprintln!("pgpilot: {e}");
    }
    pgpilot::cli::main()
}
