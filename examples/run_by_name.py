# The FAQ's run-by-name example: any registered hither function runs by its name.
import hither as hi

@hi.function('add', '0.1.0')
def add(x, y):
    return x + y

x = hi.run('add', x=1, y=2).wait()
assert x == 3
print('hi.run("add", x=1, y=2) ->', x)
