USE KB "products.gbkb"
USE KB "faq"
results = THINK KB "returns policy"
TALK results[0].text
SET CONTEXT "persona" AS "You are a helpful assistant."
answer = LLM "Summarize: " + results[0].title
TALK answer
CLEAR KB
