from hello import serve

serve()
