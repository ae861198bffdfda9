HEAR who AS NAME WITH "Full name?"
TALK "Hello, " + who + "!"
