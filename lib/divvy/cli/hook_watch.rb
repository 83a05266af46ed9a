# frozen_string_literal: true

module Divvy
  class CLI
    # Tells which of a task's hooks raised the exception that
    # {Divvy::Master#run} re-raised, so the command can name it. It wraps
    # the hooks the task has in a module prepended to the task's singleton
    # class: each records the exception it lets through, and raises it on
    # unchanged, so the run behaves as it would without the watch. Runs in
    # the master.
    class HookWatch
      # The hooks the master calls on the task and re-raises from.
      HOOKS = %i[dispatch completed failed before_fork].freeze

      # Wraps `task`'s hooks. A frozen task cannot be wrapped: its hooks
      # are then not named.
      #
      # @param task [Parallelizable] the task the command runs
      def initialize(task)
        @raised = {}.compare_by_identity
        task.singleton_class.prepend(watcher(task)) unless task.frozen?
      end

      # @param error [Exception] what {Divvy::Master#run} raised
      # @return [Symbol, nil] the hook that raised `error`, nil when none did
      def hook_for(error)
        @raised[error]
      end

      private

      # A module that wraps each hook `task` responds to (defining one the
      # task lacks would change the run: `completed` makes results travel),
      # keeping its visibility.
      def watcher(task)
        watch = self
        hooks = HOOKS.select { |hook| task.respond_to?(hook, true) }
        private_hooks = hooks.select { |hook| task.private_methods.include?(hook) }
        Module.new do
          hooks.each do |hook|
            define_method(hook) do |*args, &block|
              super(*args, &block)
            rescue ScriptError, StandardError => e
              watch.__send__(:record, hook, e)
              raise
            end
          end
          private_hooks.each { |hook| private hook }
        end
      end

      # Records that `hook` let `error` through, unless a hook it called
      # raised it first (a `completed` run while `dispatch` waited for a
      # free worker). A Divvy::Error out of `dispatch` is divvy's own, raised
      # at its `yield` (an item Marshal cannot dump, a signal, workers that
      # cannot boot), not the hook's.
      def record(hook, error)
        return if hook == :dispatch && error.is_a?(Divvy::Error)

        @raised[error] ||= hook
      end
    end
    private_constant :HookWatch
  end
end
