# The FAQ's pipeline example, run on the host (no hi.Config(container=True)), as written
# apart from the imports it needs.
import hither as hi
import numpy as np

@hi.function('mult', '0.1.0')
@hi.container('docker://jsoules/simplescipy:latest')
def mult(x, y):
    return x * y

@hi.function('invert', '0.1.0')
@hi.container('docker://jsoules/simplescipy:latest')
def invert(x):
    # You should probably be more careful about types than this in real code
    if isinstance(x, np.ndarray):
        return np.linalg.inv(x)
    return (1/x)

@hi.function('dot', '0.1.0')
@hi.container('docker://jsoules/simplescipy:latest')
def dot(x, y):
    return np.dot(x, y)

jh = hi.ParallelJobHandler(num_workers=2)
with hi.Config(job_handler=jh):
    # solve for x in xA = B, with extra computation to find x from its roots
    xroot = np.array([4, 5])
    a = np.array([[3, 4], [5, 6]])
    b = np.array([173, 214])

    ainv_job = invert.run(x=a)
    product_job = dot.run(x=b, y=ainv_job)
    x_job = mult.run(x=xroot, y=xroot)

    x = x_job.wait()
    product = product_job.wait()

    assert np.allclose(x, product)
print('x =', x, ' B A^-1 =', product)
