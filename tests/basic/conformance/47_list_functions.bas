nums = [5, 3, 8]
TALK UBOUND(nums) + " " + COUNT(nums)
TALK FIRST(nums) + LAST(nums)
TALK FIRST([]) IS NULL
people = [#{ n: "a", age: 20 }, #{ n: "b", age: 15 }, #{ n: "c", age: 20 }]
TALK COUNT(FILTER(people, "age=20"))
TALK FILTER(people, "age<18")[0].n
TALK COUNT(FILTER(people, "n", "c"))
TALK FILTER(people, "n='a'")[0].age
TALK FILTER(people, "age <> 20")
TALK COUNT("abc") + COUNT(NULL)
TALK UBOUND("oops")
