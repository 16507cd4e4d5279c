from binwatch.cli import app

app(prog_name="binwatch")
