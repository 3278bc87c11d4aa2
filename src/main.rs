fn main() -> std::process::ExitCode {
    podfwd::cli::main()
}
