who = "helper"
HEAR name AS NAME WITH "What is your name?"
TALK "Nice to meet you, " + name + " (from " + who + ")"
