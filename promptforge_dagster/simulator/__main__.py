from promptforge_dagster.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["simulate", *__import__("sys").argv[1:]]))
