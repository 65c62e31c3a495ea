fn main() -> std::process::ExitCode {
    authful_mcp_proxy::cli::main()
}
