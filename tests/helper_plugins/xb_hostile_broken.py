raise ImportError("cannot import [/x] [link=https://evil.example]click[/link] [bold red]x[/]")
